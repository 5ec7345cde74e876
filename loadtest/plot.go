package main

import (
	"bufio"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
)

// The plots are drawn here without a plotting library: two panels, the latency CDF of
// each target and path (log-scale x) and the throughput over time of each target. One
// drawing routine renders to SVG (text as text) or to a PNG raster (a 5x7 bitmap font).

// canvas is what the drawing routine needs of a backend. Coordinates are in a
// 1000×440 space; backends scale.
type canvas interface {
	line(x1, y1, x2, y2 float64, c color.RGBA, width float64)
	// polyline draws a line through pts; dash, when not empty, is the on/off pattern
	// in figure units.
	polyline(pts [][2]float64, c color.RGBA, width float64, dash []float64)
	rect(x, y, w, h float64, fill color.RGBA)
	// text draws s with its baseline-left (anchor 0), centre (1) or right (2) at x, y.
	text(x, y float64, s string, anchor int, c color.RGBA)
}

const figW, figH = 1000.0, 440.0

var palette = []color.RGBA{
	{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {255, 127, 14, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
}

var (
	black = color.RGBA{0, 0, 0, 255}
	grey  = color.RGBA{220, 220, 220, 255}
	white = color.RGBA{255, 255, 255, 255}
)

type series struct {
	label string
	pts   [][2]float64 // data coordinates
	color int          // palette index: one per target, in both panels
	dash  int          // dashes index: one per path within a target
}

// dashes tell paths apart within a target's colour.
var dashes = [][]float64{nil, {8, 4}, {2, 3}, {10, 3, 2, 3}}

// plotData turns results into the two panels' series.
func plotData(rs []*targetResult) (cdf, tput []series) {
	for ti, r := range rs {
		byPath := map[string][]float64{}
		for _, s := range r.Samples {
			if s.Results > 0 && s.Status >= 0 {
				p := s.Path
				if p == "" {
					p = "?"
				}
				byPath[p] = append(byPath[p], ms(s.E2E()))
			}
		}
		var paths []string
		for p := range byPath {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for pi, p := range paths {
			xs := byPath[p]
			sort.Float64s(xs)
			var pts [][2]float64
			for i, x := range xs {
				pts = append(pts, [2]float64{math.Max(x, 0.01), float64(i+1) / float64(len(xs))})
			}
			cdf = append(cdf, series{label: fmt.Sprintf("%s %s (n=%d)", r.Target, p, len(xs)), pts: pts, color: ti, dash: pi})
		}
		// Throughput: acks per bin, about 20 bins over the run, at least 100 ms each.
		if r.Acked == 0 || !r.End.After(r.Start) {
			continue
		}
		span := r.End.Sub(r.Start).Seconds()
		bin := math.Max(span/20, 0.1)
		nb := int(math.Ceil(span/bin)) + 1
		counts := make([]int, nb)
		for _, s := range r.Samples {
			if !s.Result.IsZero() {
				i := int(s.Result.Sub(r.Start).Seconds() / bin)
				if i >= 0 && i < nb {
					counts[i]++
				}
			}
		}
		var pts [][2]float64
		for i, c := range counts {
			pts = append(pts, [2]float64{float64(i) * bin, float64(c) / bin}, [2]float64{float64(i+1) * bin, float64(c) / bin})
		}
		tput = append(tput, series{label: r.Target, pts: pts, color: ti})
	}
	return cdf, tput
}

// draw renders the figure on c.
func draw(c canvas, title string, rs []*targetResult) {
	c.rect(0, 0, figW, figH, white)
	c.text(figW/2, 22, title, 1, black)
	cdf, tput := plotData(rs)

	// Left: latency CDF, x log10(ms).
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range cdf {
		for _, p := range s.pts {
			lo, hi = math.Min(lo, p[0]), math.Max(hi, p[0])
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	llo, lhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if lhi <= llo {
		lhi = llo + 1
	}
	var xt []tick
	for e := llo; e <= lhi; e++ {
		xt = append(xt, tick{e, trimFloat(math.Pow(10, e))})
	}
	var yt []tick
	for v := 0.0; v <= 1.0001; v += 0.25 {
		yt = append(yt, tick{v, trimFloat(v)})
	}
	var logCDF []series
	for _, s := range cdf {
		var pts [][2]float64
		for _, p := range s.pts {
			pts = append(pts, [2]float64{math.Log10(p[0]), p[1]})
		}
		logCDF = append(logCDF, series{s.label, pts, s.color, s.dash})
	}
	panel(c, 70, 50, 380, 320, "latency CDF per path (produce -> result ack)", "end to end latency (ms, log scale)", "fraction",
		llo, lhi, 0, 1, xt, yt, logCDF)

	// Right: throughput over time.
	xmax, ymax := 0.1, 1.0
	for _, s := range tput {
		for _, p := range s.pts {
			xmax, ymax = math.Max(xmax, p[0]), math.Max(ymax, p[1])
		}
	}
	ymax = niceCeil(ymax * 1.1)
	xmax = niceCeil(xmax)
	panel(c, 580, 50, 380, 320, "throughput over time", "time since first send (s)", "acks/s",
		0, xmax, 0, ymax, linTicks(0, xmax), linTicks(0, ymax), tput)
}

type tick struct {
	v     float64
	label string
}

func panel(c canvas, x0, y0, w, h float64, title, xl, yl string, xmin, xmax, ymin, ymax float64, xt, yt []tick, ss []series) {
	X := func(v float64) float64 { return x0 + (v-xmin)/(xmax-xmin)*w }
	Y := func(v float64) float64 { return y0 + h - (v-ymin)/(ymax-ymin)*h }
	c.text(x0+w/2, y0-10, title, 1, black)
	for _, t := range xt {
		c.line(X(t.v), y0, X(t.v), y0+h, grey, 1)
		c.text(X(t.v), y0+h+16, t.label, 1, black)
	}
	for _, t := range yt {
		c.line(x0, Y(t.v), x0+w, Y(t.v), grey, 1)
		c.text(x0-6, Y(t.v)+4, t.label, 2, black)
	}
	c.line(x0, y0+h, x0+w, y0+h, black, 1)
	c.line(x0, y0, x0, y0+h, black, 1)
	c.text(x0+w/2, y0+h+36, xl, 1, black)
	c.text(x0-50, y0-10, yl, 0, black)
	for i, s := range ss {
		col := palette[s.color%len(palette)]
		dash := dashes[s.dash%len(dashes)]
		var pts [][2]float64
		for _, p := range s.pts {
			pts = append(pts, [2]float64{X(p[0]), Y(p[1])})
		}
		c.polyline(pts, col, 2, dash)
		ly := y0 + h + 52 + float64(i/2)*14
		lx := x0 + float64(i%2)*(w/2)
		if ly > figH-4 {
			continue
		}
		c.polyline([][2]float64{{lx, ly - 4}, {lx + 22, ly - 4}}, col, 3, dash)
		c.text(lx+28, ly, s.label, 0, black)
	}
}

func linTicks(lo, hi float64) []tick {
	step := niceCeil((hi - lo) / 5)
	var out []tick
	for v := lo; v <= hi+step/1000; v += step {
		out = append(out, tick{v, trimFloat(v)})
	}
	return out
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		s = "0"
	}
	return s
}

// writePlot writes the figure to path; the extension (.png or .svg) picks the format.
func writePlot(path, title string, rs []*targetResult) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		s := &svgCanvas{w: w}
		fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="11">`+"\n", figW, figH, figW, figH)
		draw(s, title, rs)
		fmt.Fprintln(w, "</svg>")
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case ".png":
		const scale = 2
		img := image.NewRGBA(image.Rect(0, 0, int(figW*scale), int(figH*scale)))
		draw(&pngCanvas{img: img, scale: scale}, title, rs)
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return fmt.Errorf("--plot %s: want a .png or .svg file", path)
}

type svgCanvas struct{ w *bufio.Writer }

func rgb(c color.RGBA) string { return fmt.Sprintf("rgb(%d,%d,%d)", c.R, c.G, c.B) }

func (s *svgCanvas) line(x1, y1, x2, y2 float64, c color.RGBA, w float64) {
	fmt.Fprintf(s.w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%g"/>`+"\n", x1, y1, x2, y2, rgb(c), w)
}

func (s *svgCanvas) polyline(pts [][2]float64, c color.RGBA, w float64, dash []float64) {
	var b strings.Builder
	for _, p := range pts {
		fmt.Fprintf(&b, "%.1f,%.1f ", p[0], p[1])
	}
	da := ""
	if len(dash) > 0 {
		var parts []string
		for _, d := range dash {
			parts = append(parts, trimFloat(d))
		}
		da = fmt.Sprintf(` stroke-dasharray="%s"`, strings.Join(parts, ","))
	}
	fmt.Fprintf(s.w, `<polyline fill="none" stroke="%s" stroke-width="%g"%s points="%s"/>`+"\n", rgb(c), w, da, strings.TrimSpace(b.String()))
}

func (s *svgCanvas) rect(x, y, w, h float64, fill color.RGBA) {
	fmt.Fprintf(s.w, `<rect x="%g" y="%g" width="%g" height="%g" fill="%s"/>`+"\n", x, y, w, h, rgb(fill))
}

func (s *svgCanvas) text(x, y float64, str string, anchor int, c color.RGBA) {
	a := [...]string{"start", "middle", "end"}[anchor]
	fmt.Fprintf(s.w, `<text x="%.1f" y="%.1f" text-anchor="%s" fill="%s">%s</text>`+"\n", x, y, a, rgb(c), html.EscapeString(str))
}

type pngCanvas struct {
	img   *image.RGBA
	scale float64
}

func (p *pngCanvas) set(x, y int, c color.RGBA) {
	if image.Pt(x, y).In(p.img.Rect) {
		p.img.SetRGBA(x, y, c)
	}
}

func (p *pngCanvas) line(x1, y1, x2, y2 float64, c color.RGBA, w float64) {
	p.dashedLine(x1, y1, x2, y2, c, w, nil, 0)
}

// dashedLine draws from (x1, y1) to (x2, y2); at is how far along the dash pattern the
// line starts (figure units). It returns how far along the pattern it ends.
func (p *pngCanvas) dashedLine(x1, y1, x2, y2 float64, c color.RGBA, w float64, dash []float64, at float64) float64 {
	length := math.Hypot(x2-x1, y2-y1)
	period := 0.0
	for _, d := range dash {
		period += d
	}
	x1, y1, x2, y2 = x1*p.scale, y1*p.scale, x2*p.scale, y2*p.scale
	r := math.Max(w*p.scale/2, 0.5)
	n := int(math.Max(math.Abs(x2-x1), math.Abs(y2-y1))) + 1
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		if period > 0 && !dashOn(dash, math.Mod(at+t*length, period)) {
			continue
		}
		cx, cy := x1+(x2-x1)*t, y1+(y2-y1)*t
		for dy := -r + 0.5; dy < r; dy++ {
			for dx := -r + 0.5; dx < r; dx++ {
				p.set(int(cx+dx), int(cy+dy), c)
			}
		}
	}
	return at + length
}

// dashOn reports whether position x within one period of dash is drawn.
func dashOn(dash []float64, x float64) bool {
	for i, d := range dash {
		if x < d {
			return i%2 == 0
		}
		x -= d
	}
	return true
}

func (p *pngCanvas) polyline(pts [][2]float64, c color.RGBA, w float64, dash []float64) {
	at := 0.0
	for i := 1; i < len(pts); i++ {
		at = p.dashedLine(pts[i-1][0], pts[i-1][1], pts[i][0], pts[i][1], c, w, dash, at)
	}
	if len(pts) == 1 {
		p.line(pts[0][0], pts[0][1], pts[0][0], pts[0][1], c, w*2)
	}
}

func (p *pngCanvas) rect(x, y, w, h float64, fill color.RGBA) {
	for yy := int(y * p.scale); yy < int((y+h)*p.scale); yy++ {
		for xx := int(x * p.scale); xx < int((x+w)*p.scale); xx++ {
			p.set(xx, yy, fill)
		}
	}
}

// text draws with the bitmap font: 6 units per character, 7 high, at one pixel per unit
// in figure space (so scale pixels in the image).
func (p *pngCanvas) text(x, y float64, s string, anchor int, c color.RGBA) {
	const adv = 6.0
	width := adv * float64(len([]rune(s)))
	x -= width * float64(anchor) / 2
	px := int(p.scale)
	for _, r := range s {
		g, ok := glyphs[unicode.ToUpper(r)]
		if !ok {
			g = glyphs['?']
		}
		ox, oy := int(x*p.scale), int((y-7)*p.scale)
		for row := 0; row < 7; row++ {
			for col := 0; col < 5; col++ {
				if g[row]&(1<<(4-col)) == 0 {
					continue
				}
				for dy := 0; dy < px; dy++ {
					for dx := 0; dx < px; dx++ {
						p.set(ox+col*px+dx, oy+row*px+dy, c)
					}
				}
			}
		}
		x += adv
	}
}
