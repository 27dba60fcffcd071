package functions

import (
	"bytes"
	"compress/gzip"
	"errors"
)

func init() {
	register(Spec{
		Name:           "gzip",
		Summary:        "gzip 16 input-selected 32 KiB chunks of a generated text document (FunctionBench gzip_compression)",
		DefaultDataMiB: 16,
		memory:         func(d int) (int, int) { return d, 2 },
		newImpl:        func() impl { return &gzipFunc{} },
	})
}

// gzipFunc compresses parts of an English-looking document.
type gzipFunc struct {
	doc []byte
}

const (
	gzipChunks = 16
	gzipTotal  = 512 << 10
)

func (f *gzipFunc) init(dataMiB int) error {
	f.doc = make([]byte, dataMiB*MiB)
	newTextGen(seedFor("gzip/init", 0), 8192).fill(f.doc)
	return nil
}

func (f *gzipFunc) invoke(input uint64) (Result, error) {
	r := newRNG(seedFor("gzip", input))
	chunk := min(gzipTotal, len(f.doc)/4) / gzipChunks
	if chunk == 0 {
		return Result{}, errors.New("document too small")
	}
	var out bytes.Buffer
	out.Grow(chunk * gzipChunks / 2)
	zw, err := gzip.NewWriterLevel(&out, gzip.DefaultCompression)
	if err != nil {
		return Result{}, err
	}
	for c := 0; c < gzipChunks; c++ {
		off := r.intn(len(f.doc) - chunk + 1)
		if _, err := zw.Write(f.doc[off : off+chunk]); err != nil {
			return Result{}, err
		}
	}
	if err := zw.Close(); err != nil {
		return Result{}, err
	}
	d := newDigest()
	d.Write(out.Bytes())
	return Result{
		Checksum:     d.sum(),
		OutputBytes:  int64(out.Len()),
		TouchedBytes: int64(chunk * gzipChunks),
	}, nil
}
