package functions

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

func init() {
	register(Spec{
		Name:           "json",
		Summary:        "parse 8 input-selected runs of 192 JSON records into generic values, transform them and serialise the batch (FunctionBench json_serdes)",
		DefaultDataMiB: 16,
		memory:         func(d int) (int, int) { return d, 12 },
		newImpl:        func() impl { return &jsonFunc{} },
	})
}

// jsonFunc holds a corpus of JSON records, one per line.
type jsonFunc struct {
	corpus []byte
	starts []int32 // start offset of each record; one extra entry at the end
}

type jsonItem struct {
	SKU   string  `json:"sku"`
	Qty   int     `json:"qty"`
	Price float64 `json:"price"`
}

type jsonUser struct {
	Name     string   `json:"name"`
	Email    string   `json:"email"`
	Age      int      `json:"age"`
	Verified bool     `json:"verified"`
	Tags     []string `json:"tags"`
}

type jsonRecord struct {
	ID       int        `json:"id"`
	User     jsonUser   `json:"user"`
	Title    string     `json:"title"`
	Body     string     `json:"body"`
	Score    float64    `json:"score"`
	Created  string     `json:"created"`
	Items    []jsonItem `json:"items"`
	Location [2]float64 `json:"location"`
}

const (
	jsonRuns      = 8
	jsonRunLength = 192
)

func (f *jsonFunc) init(dataMiB int) error {
	g := newTextGen(seedFor("json/init", 0), 4096)
	r := g.r
	f.corpus = make([]byte, 0, dataMiB*MiB)
	for id := 0; ; id++ {
		rec := jsonRecord{
			ID:      id,
			Title:   string(g.appendSentence(nil, 3, 8)),
			Body:    string(g.appendSentence(append(g.appendSentence(nil, 8, 20), ' '), 8, 20)),
			Score:   float64(r.intn(100001)) / 1000,
			Created: fmt.Sprintf("2024-%02d-%02dT%02d:%02d:%02dZ", 1+r.intn(12), 1+r.intn(28), r.intn(24), r.intn(60), r.intn(60)),
			Location: [2]float64{
				float64(r.intn(180000001)-90000000) / 1e6,
				float64(r.intn(360000001)-180000000) / 1e6,
			},
		}
		first, last := g.word(), g.word()
		rec.User = jsonUser{
			Name:     first + " " + last,
			Email:    first + "." + last + "@example.com",
			Age:      18 + r.intn(70),
			Verified: r.intn(3) > 0,
		}
		for n := 1 + r.intn(5); n > 0; n-- {
			rec.User.Tags = append(rec.User.Tags, g.word())
		}
		for n := 1 + r.intn(6); n > 0; n-- {
			rec.Items = append(rec.Items, jsonItem{
				SKU:   fmt.Sprintf("SKU-%06d", r.intn(1000000)),
				Qty:   1 + r.intn(20),
				Price: float64(r.intn(100000)) / 100,
			})
		}
		line, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("marshal record %d: %w", id, err)
		}
		if len(f.corpus)+len(line)+1 > cap(f.corpus) {
			break
		}
		f.starts = append(f.starts, int32(len(f.corpus)))
		f.corpus = append(f.corpus, line...)
		f.corpus = append(f.corpus, '\n')
	}
	if len(f.starts) < 2*jsonRuns {
		return fmt.Errorf("%d MiB holds only %d records", dataMiB, len(f.starts))
	}
	f.starts = append(f.starts, int32(len(f.corpus)))
	return nil
}

func (f *jsonFunc) invoke(input uint64) (Result, error) {
	r := newRNG(seedFor("json", input))
	n := len(f.starts) - 1
	run := min(jsonRunLength, n/(2*jsonRuns))
	batch := make([]any, 0, jsonRuns*run)
	var touched int64
	for k := 0; k < jsonRuns; k++ {
		first := r.intn(n - run + 1)
		for i := first; i < first+run; i++ {
			line := f.corpus[f.starts[i]:f.starts[i+1]]
			touched += int64(len(line))
			var v any
			if err := json.Unmarshal(line, &v); err != nil {
				return Result{}, fmt.Errorf("record %d: %w", i, err)
			}
			rec, err := transformRecord(v)
			if err != nil {
				return Result{}, fmt.Errorf("record %d: %w", i, err)
			}
			batch = append(batch, rec)
		}
	}
	out, err := json.Marshal(map[string]any{"input": input, "count": len(batch), "records": batch})
	if err != nil {
		return Result{}, err
	}
	d := newDigest()
	d.Write(out)
	return Result{Checksum: d.sum(), OutputBytes: int64(len(out)), TouchedBytes: touched}, nil
}

// transformRecord does what a typical handler does to a decoded document:
// derive fields, normalise strings, drop bulky ones.
func transformRecord(v any) (map[string]any, error) {
	rec, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("record is not an object")
	}
	user, ok := rec["user"].(map[string]any)
	if !ok {
		return nil, errors.New("user is not an object")
	}
	if name, ok := user["name"].(string); ok {
		user["name"] = strings.ToUpper(name)
	}
	if tags, ok := user["tags"].([]any); ok {
		slices.SortFunc(tags, func(a, b any) int {
			as, _ := a.(string)
			bs, _ := b.(string)
			return strings.Compare(as, bs)
		})
	}
	items, _ := rec["items"].([]any)
	var total float64
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, errors.New("item is not an object")
		}
		qty, _ := m["qty"].(float64)
		price, _ := m["price"].(float64)
		// The conversion stops the compiler fusing into an FMA (GOAMD64=v3).
		sub := float64(qty * price)
		m["subtotal"] = sub
		total += sub
	}
	rec["total"] = total
	if body, ok := rec["body"].(string); ok {
		rec["words"] = len(strings.Fields(body))
		rec["body"] = body[:min(len(body), 80)]
	}
	rec["processed"] = true
	return rec, nil
}
