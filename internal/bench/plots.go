package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/replay"
)

// PlotFormats are the formats every figure is written in.
var PlotFormats = []string{"svg", "png"}

// palette gives each series the same colour in every figure.
var palette = map[string]color.Color{
	policy.Lazy:                 color.RGBA{0x4c, 0x72, 0xb0, 0xff},
	policy.NoRA:                 color.RGBA{0xdd, 0x84, 0x52, 0xff},
	policy.SnapBPF:              color.RGBA{0x55, 0xa8, 0x68, 0xff},
	PolicySnapBPFOther:          color.RGBA{0xa6, 0xd8, 0x54, 0xff},
	PolicyWarm:                  color.RGBA{0xa0, 0xa0, 0xa0, 0xff},
	replay.FaaSnap:              color.RGBA{0xc4, 0x4e, 0x52, 0xff},
	replay.REAP:                 color.RGBA{0x81, 0x72, 0xb3, 0xff},
	stepLinux:                   color.RGBA{0x4c, 0x72, 0xb0, 0xff},
	stepFreePage:                color.RGBA{0x81, 0x72, 0xb3, 0xff},
	stepSnapBPF:                 color.RGBA{0x55, 0xa8, 0x68, 0xff},
	seriesLabel(SeriesPrefetch): color.RGBA{0x55, 0xa8, 0x68, 0xff},
	seriesLabel(SeriesFio):      color.RGBA{0x93, 0x78, 0x60, 0xff},
}

var fallbackColors = []color.Color{
	color.RGBA{0xc4, 0x4e, 0x52, 0xff}, color.RGBA{0x64, 0xb5, 0xcd, 0xff}, color.RGBA{0xcc, 0xb9, 0x74, 0xff},
}

func colorOf(name string, i int) color.Color {
	if c, ok := palette[name]; ok {
		return c
	}
	return fallbackColors[i%len(fallbackColors)]
}

// writePlot draws the tiles of plots (rows of panels) once per format
// into dir/name.FORMAT and returns the files written.
func writePlot(dir, name string, rows [][]*plot.Plot, w, h vg.Length) ([]string, error) {
	var files []string
	for _, format := range PlotFormats {
		c, err := draw.NewFormattedCanvas(w, h, format)
		if err != nil {
			return files, fmt.Errorf("plot %s: %w", name, err)
		}
		tiles := draw.Tiles{Rows: len(rows), Cols: len(rows[0]), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
			PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
		canvases := plot.Align(rows, tiles, draw.New(c))
		for j, row := range rows {
			for i, p := range row {
				if p != nil {
					p.Draw(canvases[j][i])
				}
			}
		}
		path := filepath.Join(dir, name+"."+format)
		if err := writeTo(path, c); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

func writeTo(path string, c vg.CanvasWriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	return nil
}

// plotBars draws a grouped bar chart with min–max whiskers.
func plotBars(dir string, f barFigure) ([]string, error) {
	p := plot.New()
	p.Title.Text = f.Title
	p.Y.Label.Text = f.YLabel
	p.Y.Min = 0
	p.Y.Tick.Marker = plainTicks{}
	p.Legend.Top = true
	p.Legend.Left = true
	// Each category spans one unit of x; its bars fill 80% of it. The
	// data area is the canvas less about an inch of axis and labels.
	w := vg.Length(max(5, 1.3*float64(len(f.Categories)))) * vg.Inch
	p.X.Min, p.X.Max = -0.5, float64(len(f.Categories))-0.5
	width := 0.8 * (w - vg.Inch) / vg.Length(max(len(f.Categories), 1)*max(len(f.Series), 1))
	for i, s := range f.Series {
		vals := make(plotter.Values, len(s.Values))
		for j, v := range s.Values {
			if v.Valid() {
				vals[j] = v.Median
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", f.Name, err)
		}
		bars.Color = colorOf(s.Name, i)
		bars.LineStyle.Width = 0
		bars.Offset = width * vg.Length(float64(i)-float64(len(f.Series)-1)/2)
		p.Add(bars, &whiskers{values: s.Values, offset: bars.Offset})
		p.Legend.Add(s.Name, bars)
	}
	p.NominalX(f.Categories...)
	// Room above the tallest whisker for the legend.
	_, _, _, ymax := rangeOf(f)
	p.Y.Max = ymax * 1.4
	return writePlot(dir, f.Name, [][]*plot.Plot{{p}}, w, 4*vg.Inch)
}

// rangeOf is the value range of a bar figure, whiskers included.
func rangeOf(f barFigure) (xmin, xmax, ymin, ymax float64) {
	for _, s := range f.Series {
		for _, v := range s.Values {
			if v.Valid() {
				ymax = max(ymax, v.Max)
			}
		}
	}
	if ymax == 0 {
		ymax = 1
	}
	return 0, float64(len(f.Categories) - 1), 0, ymax
}

// whiskers draws each bar's min–max range as a vertical line with caps,
// at the bar's offset.
type whiskers struct {
	values []Summary
	offset vg.Length
}

func (w *whiskers) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	sty := draw.LineStyle{Color: color.Black, Width: vg.Points(0.8)}
	cap := vg.Points(3)
	for i, v := range w.values {
		if !v.Valid() || v.Min == v.Max {
			continue
		}
		x := trX(float64(i)) + w.offset
		lo, hi := trY(v.Min), trY(v.Max)
		c.StrokeLine2(sty, x, lo, x, hi)
		c.StrokeLine2(sty, x-cap, lo, x+cap, lo)
		c.StrokeLine2(sty, x-cap, hi, x+cap, hi)
	}
}

// DataRange makes the axes cover the whiskers.
func (w *whiskers) DataRange() (xmin, xmax, ymin, ymax float64) {
	ymin, ymax = 0, 0
	for _, v := range w.values {
		if v.Valid() {
			ymax = max(ymax, v.Max)
		}
	}
	return 0, float64(max(len(w.values)-1, 0)), ymin, ymax
}

// PlotLines draws f into dir/NAME.svg and .png: one panel per function
// (or metric), lines with min–max error bars, and returns the files.
func PlotLines(dir string, f LineFigure) ([]string, error) {
	cols := min(len(f.Panels), 4)
	nrows := (len(f.Panels) + cols - 1) / cols
	rows := make([][]*plot.Plot, nrows)
	for r := range rows {
		rows[r] = make([]*plot.Plot, cols)
	}
	for k, panel := range f.Panels {
		p := plot.New()
		p.Title.Text = panel.Title
		p.X.Label.Text = f.XLabel
		p.Y.Label.Text = f.YLabel
		p.Y.Min = 0
		p.Y.Tick.Marker = plainTicks{}
		p.Legend.Top = true
		p.Legend.Left = true
		var ticks plot.ConstantTicks
		ymax := 0.0
		for i, s := range panel.Series {
			xys := make(plotter.XYs, len(s.X))
			errs := make(plotter.YErrors, len(s.X))
			for j := range s.X {
				xys[j].X, xys[j].Y = s.X[j], s.Y[j].Median
				errs[j].Low, errs[j].High = s.Y[j].Median-s.Y[j].Min, s.Y[j].Max-s.Y[j].Median
				ymax = max(ymax, s.Y[j].Max)
				ticks = addTick(ticks, s.X[j])
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, fmt.Errorf("plot %s: %w", f.Name, err)
			}
			col := colorOf(s.Name, i)
			line.Color, points.Color = col, col
			line.Width = vg.Points(1.5)
			bars, err := plotter.NewYErrorBars(struct {
				plotter.XYs
				plotter.YErrors
			}{xys, errs})
			if err != nil {
				return nil, fmt.Errorf("plot %s: %w", f.Name, err)
			}
			bars.Color = col
			p.Add(line, points, bars)
			p.Legend.Add(s.Name, line, points)
		}
		p.X.Min, p.X.Max = 0, ticks[len(ticks)-1].Value*1.05
		p.X.Tick.Marker = ticks
		if f.EvenXTicks || len(ticks) > maxLabelledTicks {
			// A time series: a label at every sample would overlap.
			p.X.Tick.Marker = plainTicks{}
		}
		p.Y.Max = math.Max(ymax*1.35, 1e-9)
		rows[k/cols][k%cols] = p
	}
	w := vg.Length(cols) * 3.2 * vg.Inch
	h := vg.Length(nrows) * 3 * vg.Inch
	return writePlot(dir, f.Name, rows, w, h)
}

// maxLabelledTicks is how many x values a line panel labels each of;
// beyond it the axis gets gonum's evenly spaced ticks.
const maxLabelledTicks = 12

// plainTicks are gonum's default ticks labelled without trailing zeros
// ("2500", not "2500.00").
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', 6, 64)
		}
	}
	return ts
}

// addTick adds a labelled tick at x unless there is one.
func addTick(ts plot.ConstantTicks, x float64) plot.ConstantTicks {
	for _, t := range ts {
		if t.Value == x {
			return ts
		}
	}
	ts = append(ts, plot.Tick{Value: x, Label: fmt.Sprint(x)})
	for i := len(ts) - 1; i > 0 && ts[i].Value < ts[i-1].Value; i-- {
		ts[i], ts[i-1] = ts[i-1], ts[i]
	}
	return ts
}
