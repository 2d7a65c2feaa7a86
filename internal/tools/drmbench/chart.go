package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	colWhite  = color.RGBA{255, 255, 255, 255}
	colText   = color.RGBA{30, 30, 30, 255}
	colMuted  = color.RGBA{110, 110, 110, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colMet    = color.RGBA{46, 150, 70, 255}
	colMissed = color.RGBA{205, 50, 45, 255}
	colTarget = color.RGBA{20, 40, 140, 255}
	colBand   = color.RGBA{246, 246, 250, 255}
)

// canvas draws at 1x with basicfont (7x13) and is scaled up by an integer
// factor when saved, so the labels stay crisp and legible.
type canvas struct{ img *image.RGBA }

func (c *canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1), &image.Uniform{col}, image.Point{}, draw.Src)
}

// text draws s with its baseline at y; it returns the x after it.
func (c *canvas) text(x, y int, s string, col color.Color) int {
	s = asciiDashes.Replace(s) // basicfont has ASCII only
	d := &font.Drawer{Dst: c.img, Src: &image.Uniform{col}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
	return d.Dot.X.Round()
}

var asciiDashes = strings.NewReplacer("–", "-", "—", "-", "≥", ">=", "≤", "<=", "÷", "/")

func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, asciiDashes.Replace(s)).Round()
}

func clip(s string, px int) string {
	r := []rune(s)
	for len(r) > 0 && textWidth(string(r)) > px {
		r = r[:len(r)-1]
	}
	return string(r)
}

const (
	chartW   = 1000
	labelW   = 300
	barX0    = labelW + 20
	barX1    = chartW - 240
	rowH     = 30
	barH     = 14
	upscale  = 2
	noteText = "bar: median; whisker: min–max; blue line: target. Green: met, red: missed."
)

// drawChart draws two panels: the ratios against their same-run baselines
// on one common axis, and the figures with absolute targets, each on its
// own axis. Every bar has its target line.
func drawChart(r *results, path string) error {
	var ratios, abs []*row
	for _, row := range r.Rows {
		if row.Target == nil || row.Met == nil {
			continue
		}
		if row.Target.On == "ratio" {
			ratios = append(ratios, row)
		} else {
			abs = append(abs, row)
		}
	}
	h := 60 + 30 + len(ratios)*rowH + 30 + 40 + 30 + len(abs)*rowH + 30
	c := &canvas{image.NewRGBA(image.Rect(0, 0, chartW, h))}
	c.rect(0, 0, chartW, h, colWhite)
	title := "caddy-drm vs plain Caddy — " + r.Command
	if r.Config.Quick {
		title += " (QUICK MODE: smoke test only)"
	}
	c.text(10, 20, title, colText)
	c.text(10, 38, fmt.Sprintf("%s; %s CPUs (%s); %s", r.Machine.Date, r.Machine.Nproc, r.Machine.CPU, r.Machine.GoVersion), colMuted)
	c.text(10, 54, noteText, colMuted)
	y := 80

	// Panel 1: ratios on a common axis.
	c.text(10, y, "Product / baseline (same run), ratio", colText)
	y += 14
	xmax := 1.0
	for _, row := range ratios {
		xmax = math.Max(xmax, math.Max(row.Ratio.Max, row.Target.Value))
	}
	xmax = math.Ceil(xmax*1.1*4) / 4
	scale := func(v float64) int { return barX0 + int(math.Round(v/xmax*float64(barX1-barX0))) }
	top := y
	for i := 0; i <= int(xmax*4); i++ {
		x := scale(float64(i) / 4)
		c.rect(x, top, x+1, top+len(ratios)*rowH, colGrid)
	}
	for i, row := range ratios {
		ry := top + i*rowH
		if i%2 == 0 {
			c.rect(0, ry, barX0-4, ry+rowH, colBand)
		}
		bar(c, row, ry, row.Ratio.Value, row.Ratio.Min, row.Ratio.Max, scale)
	}
	y = top + len(ratios)*rowH
	for i := 0; i <= int(xmax*4); i += 2 {
		v := float64(i) / 4
		s := fmt.Sprintf("%.1f", v)
		c.text(scale(v)-textWidth(s)/2, y+14, s, colMuted)
	}
	y += 50

	// Panel 2: absolute targets, each row on its own axis.
	c.text(10, y, "Figures with absolute targets (each row on its own axis, starting at 0)", colText)
	y += 14
	for i, row := range abs {
		ry := y + i*rowH
		if i%2 == 0 {
			c.rect(0, ry, barX0-4, ry+rowH, colBand)
		}
		p := row.Product
		m := math.Max(p.max(), row.Target.Value) * 1.25
		if m == 0 {
			m = 1
		}
		sc := func(v float64) int { return barX0 + int(math.Round(v/m*float64(barX1-barX0))) }
		c.rect(barX0, ry+2, barX0+1, ry+rowH-2, colGrid)
		bar(c, row, ry, p.median(), p.min(), p.max(), sc)
	}
	return save(c.img, path)
}

// bar draws one row: label, bar (median), whisker (min–max), target
// line, and the value, target and verdict right of the axis.
func bar(c *canvas, row *row, ry int, v, lo, hi float64, sc func(float64) int) {
	label := row.Short
	if label == "" {
		label = row.Name
	}
	c.text(10, ry+rowH/2+4, clip(label, labelW-10), colText)
	col := colMet
	if !*row.Met {
		col = colMissed
	}
	cy := ry + rowH/2
	c.rect(barX0, cy-barH/2, max(sc(v), barX0+1), cy+barH/2, col)
	c.rect(sc(lo), cy-1, max(sc(hi), sc(lo)+1), cy+1, colText)
	c.rect(sc(lo), cy-4, sc(lo)+1, cy+4, colText)
	c.rect(sc(hi), cy-4, sc(hi)+1, cy+4, colText)
	tx := sc(row.Target.Value)
	c.rect(tx-1, ry+2, tx+2, ry+rowH-2, colTarget)
	c.text(barX1+10, cy+4, clip(valueText(row), chartW-barX1-14), col)
}

// valueText is the value, the target and the verdict of a row.
func valueText(row *row) string {
	verdict := "met"
	if !*row.Met {
		verdict = "MISSED"
	}
	if row.Target.On == "ratio" {
		return fmt.Sprintf("%.2f (%s %.2f) %s", row.Ratio.Value, opSym(row.Target.Op), row.Target.Value, verdict)
	}
	return fmt.Sprintf("%s %s (%s %s) %s", fmtNum(row.Product.median()), shortUnit(row.Product.Unit),
		opSym(row.Target.Op), fmtNum(row.Target.Value), verdict)
}

func opSym(op string) string {
	if op == "<=" {
		return "<="
	}
	return ">="
}

func shortUnit(u string) string {
	switch u {
	case "handshakes/s per core":
		return "/s/core"
	case "KiB/session":
		return "KiB"
	}
	return u
}

// save writes img scaled up by upscale (nearest neighbour) as PNG.
func save(img *image.RGBA, path string) error {
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx()*upscale, b.Dy()*upscale))
	for y := 0; y < out.Bounds().Dy(); y++ {
		for x := 0; x < out.Bounds().Dx(); x++ {
			out.SetRGBA(x, y, img.RGBAAt(x/upscale, y/upscale))
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, out); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
