package functions

import (
	"fmt"
	"image"
	"math"
)

func init() {
	register(Spec{
		Name:           "image",
		Summary:        "crop an input-selected 1280x1280 region of a generated RGBA image, resize it to 720x720 (bilinear), blur, rotate and greyscale it (FunctionBench image_processing)",
		DefaultDataMiB: 64,
		memory:         func(d int) (int, int) { return d, 12 },
		newImpl:        func() impl { return &imageFunc{} },
	})
}

// imageFunc processes regions of one large square RGBA image. All pixel
// arithmetic is integer, so host and guest agree trivially.
type imageFunc struct {
	img *image.RGBA
}

const (
	imageCrop = 1280
	imageOut  = 720
)

func (f *imageFunc) init(dataMiB int) error {
	side := int(math.Sqrt(float64(dataMiB * MiB / 4)))
	if side < 64 {
		return fmt.Errorf("%d MiB is too small for an image", dataMiB)
	}
	f.img = image.NewRGBA(image.Rect(0, 0, side, side))
	paintImage(f.img, newRNG(seedFor("image/init", 0)))
	return nil
}

// paintImage fills img with value noise: a coarse grid of random colours
// interpolated smoothly, plus fine grain, so that blurring and resizing do
// real work (a flat or pure-noise image would not look like a photo).
func paintImage(img *image.RGBA, r *rng) {
	const cell = 64
	side := img.Rect.Dx()
	g := side/cell + 2
	grid := make([]byte, g*g*3)
	r.fillBytes(grid)
	// col holds, for the current row, the grid interpolated vertically at
	// every grid column, scaled by cell; pixels then only interpolate
	// horizontally between two entries.
	col := make([]uint32, g*3)
	var grain uint64
	for y := 0; y < side; y++ {
		gy, fy := y/cell, uint32(y%cell)
		for i := range col {
			top, bot := uint32(grid[gy*g*3+i]), uint32(grid[(gy+1)*g*3+i])
			col[i] = top*(cell-fy) + bot*fy
		}
		row := img.Pix[y*img.Stride : y*img.Stride+4*side]
		for x := 0; x < side; x++ {
			gx, fx := x/cell, uint32(x%cell)
			if x%8 == 0 {
				grain = r.uint64()
			}
			noise := uint32(grain>>(8*(x%8))) & 15
			c0, c1 := col[gx*3:gx*3+3], col[gx*3+3:gx*3+6]
			p := row[4*x : 4*x+4]
			p[0] = byte(min((c0[0]*(cell-fx)+c1[0]*fx)/(cell*cell)+noise, 255))
			p[1] = byte(min((c0[1]*(cell-fx)+c1[1]*fx)/(cell*cell)+noise, 255))
			p[2] = byte(min((c0[2]*(cell-fx)+c1[2]*fx)/(cell*cell)+noise, 255))
			p[3] = 255
		}
	}
}

func (f *imageFunc) invoke(input uint64) (Result, error) {
	r := newRNG(seedFor("image", input))
	side := f.img.Rect.Dx()
	crop := min(imageCrop, side*3/8)
	out := crop * imageOut / imageCrop
	x0, y0 := r.intn(side-crop+1), r.intn(side-crop+1)
	small := resizeBilinear(f.img, x0, y0, crop, out)
	blurred := blur5(small)
	rotated := rotate90(blurred)
	gray := greyscale(rotated)
	d := newDigest()
	d.Write(rotated.Pix)
	d.Write(gray.Pix)
	return Result{
		Checksum:     d.sum(),
		OutputBytes:  int64(len(rotated.Pix) + len(gray.Pix)),
		TouchedBytes: int64(crop * crop * 4),
	}, nil
}

// resizeBilinear scales the crop x crop square at (x0, y0) of src to
// out x out, with 16-bit fixed-point weights.
func resizeBilinear(src *image.RGBA, x0, y0, crop, out int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, out, out))
	step := (crop - 1) << 16 / max(out-1, 1)
	for y := 0; y < out; y++ {
		sy := y * step
		iy, wy := sy>>16, uint32(sy&0xffff)
		r0 := src.Pix[(y0+iy)*src.Stride+4*x0:]
		r1 := r0
		if iy+1 < crop {
			r1 = src.Pix[(y0+iy+1)*src.Stride+4*x0:]
		}
		drow := dst.Pix[y*dst.Stride : y*dst.Stride+4*out]
		for x := 0; x < out; x++ {
			sx := x * step
			ix, wx := sx>>16, uint32(sx&0xffff)
			jx := min(ix+1, crop-1)
			for c := 0; c < 4; c++ {
				a, b := uint32(r0[4*ix+c]), uint32(r0[4*jx+c])
				p, q := uint32(r1[4*ix+c]), uint32(r1[4*jx+c])
				top := (a*(0x10000-wx) + b*wx) >> 8
				bot := (p*(0x10000-wx) + q*wx) >> 8
				drow[4*x+c] = byte((top*(0x10000-wy)>>8 + bot*wy>>8) >> 16)
			}
		}
	}
	return dst
}

// blur5 applies the separable 5-tap binomial kernel [1 4 6 4 1]/16,
// clamping at the edges.
func blur5(src *image.RGBA) *image.RGBA {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	tmp := make([]uint16, w*h*4)
	k := [5]uint32{1, 4, 6, 4, 1}
	for y := 0; y < h; y++ {
		row := src.Pix[y*src.Stride:]
		for x := 0; x < w; x++ {
			for c := 0; c < 4; c++ {
				var s uint32
				for i := -2; i <= 2; i++ {
					xx := min(max(x+i, 0), w-1)
					s += k[i+2] * uint32(row[4*xx+c])
				}
				tmp[(y*w+x)*4+c] = uint16(s)
			}
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 4; c++ {
				var s uint32
				for i := -2; i <= 2; i++ {
					yy := min(max(y+i, 0), h-1)
					s += k[i+2] * uint32(tmp[(yy*w+x)*4+c])
				}
				dst.Pix[y*dst.Stride+4*x+c] = byte((s + 128) >> 8)
			}
		}
	}
	return dst
}

// rotate90 rotates clockwise.
func rotate90(src *image.RGBA) *image.RGBA {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dst := image.NewRGBA(image.Rect(0, 0, h, w))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			s := src.Pix[y*src.Stride+4*x : y*src.Stride+4*x+4]
			copy(dst.Pix[x*dst.Stride+4*(h-1-y):], s)
		}
	}
	return dst
}

// greyscale uses the ITU-R 601 luma weights.
func greyscale(src *image.RGBA) *image.Gray {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dst := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := src.Pix[y*src.Stride+4*x:]
			dst.Pix[y*dst.Stride+x] = byte((299*uint32(p[0]) + 587*uint32(p[1]) + 114*uint32(p[2]) + 500) / 1000)
		}
	}
	return dst
}
