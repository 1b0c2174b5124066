/* SVG line charts (see plot.h). Axis ranges come from the finite points; ticks are 1, 2 or 5 times a
 * power of ten so the labels read as round numbers; long series are binned to one point per pixel
 * column so a 100k-step run still gives a small file. */
#include "train/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"

#define GRID "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
    }
}

/* A round tick spacing (1, 2 or 5 × 10^k) giving about `want` intervals over span. */
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10.0, floor(log10(raw))), r = raw / p;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * p;
}

static void fmt_num(char *buf, size_t n, double v, double step) {
    if (fabs(v) < 1e-12 * step) v = 0;
    double a = fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-3)) snprintf(buf, n, "%.3g", v);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, n, "%.*f", dec > 6 ? 6 : dec, v);
    }
}

typedef struct {
    double x0, x1, y0, y1; /* data range (y in log10 when log_y) */
    double px0, px1, py0, py1;
    int log_y;
} frame;

static double fx(const frame *fr, double x) { return fr->px0 + (x - fr->x0) / (fr->x1 - fr->x0) * (fr->px1 - fr->px0); }
static double fy(const frame *fr, double y) { return fr->py0 - (y - fr->y0) / (fr->y1 - fr->y0) * (fr->py0 - fr->py1); }

static int usable(const frame *fr, double x, double y) { return isfinite(x) && isfinite(y) && (!fr->log_y || y > 0); }
static double ty(const frame *fr, double y) { return fr->log_y ? log10(y) : y; }

gm_status gm_plot_svg(const char *path, const gm_plot_opts *o_in, const gm_plot_series *s, int n_series) {
    gm_plot_opts o = o_in ? *o_in : (gm_plot_opts){0};
    int W = o.width > 0 ? o.width : 800, H = o.height > 0 ? o.height : 480;
    frame fr = {INFINITY, -INFINITY, INFINITY, -INFINITY, 70, W - 20.0, H - 50.0, o.title ? 40 : 20, o.log_y};
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!usable(&fr, s[k].x[i], s[k].y[i])) continue;
            double y = ty(&fr, s[k].y[i]);
            fr.x0 = fmin(fr.x0, s[k].x[i]), fr.x1 = fmax(fr.x1, s[k].x[i]);
            fr.y0 = fmin(fr.y0, y), fr.y1 = fmax(fr.y1, y);
        }
    if (!(fr.x0 <= fr.x1)) fr.x0 = 0, fr.x1 = 1, fr.y0 = 0, fr.y1 = 1; /* nothing to draw: empty axes */
    if (fr.x1 - fr.x0 < 1e-12 * fmax(1.0, fabs(fr.x0))) fr.x0 -= 0.5, fr.x1 += 0.5;
    if (fr.y1 - fr.y0 < 1e-12 * fmax(1.0, fabs(fr.y0))) fr.y0 -= 0.5, fr.y1 += 0.5;
    double pad = 0.05 * (fr.y1 - fr.y0);
    fr.y0 -= pad, fr.y1 += pad;

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return gm_fail(GM_ERR_NOMEM, "out of memory");
    snprintf(tmp, plen + 16, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        gm_status st = gm_fail(GM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    if (o.title) {
        fprintf(f, "<text x=\"%g\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", W / 2.0);
        xml_text(f, o.title);
        fprintf(f, "</text>\n");
    }
    /* grid and ticks */
    char lab[64];
    double xs = nice_step(fr.x1 - fr.x0, 6);
    for (double x = ceil(fr.x0 / xs) * xs; x <= fr.x1 + 1e-9 * xs; x += xs) {
        double X = fx(&fr, x);
        fmt_num(lab, sizeof lab, x, xs);
        fprintf(f, GRID, X, fr.py0, X, fr.py1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", X, fr.py0 + 16, lab);
    }
    if (fr.log_y) { /* decades, with 2 and 5 between them when there are few */
        int few = fr.y1 - fr.y0 < 2.5;
        for (double e = floor(fr.y0); e <= ceil(fr.y1); e++)
            for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3)) {
                if (m != 1 && !few) continue;
                double y = e + log10((double)m);
                if (y < fr.y0 || y > fr.y1) continue;
                double Y = fy(&fr, y), v = pow(10.0, y);
                snprintf(lab, sizeof lab, "%g", v);
                fprintf(f, GRID, fr.px0, Y, fr.px1, Y);
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", fr.px0 - 6, Y + 4, lab);
            }
    } else {
        double ys = nice_step(fr.y1 - fr.y0, 6);
        for (double y = ceil(fr.y0 / ys) * ys; y <= fr.y1 + 1e-9 * ys; y += ys) {
            double Y = fy(&fr, y);
            fmt_num(lab, sizeof lab, y, ys);
            fprintf(f, GRID, fr.px0, Y, fr.px1, Y);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", fr.px0 - 6, Y + 4, lab);
        }
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", fr.px0,
            fr.py1, fr.px1 - fr.px0, fr.py0 - fr.py1);
    if (o.xlabel) {
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", (fr.px0 + fr.px1) / 2, H - 12);
        xml_text(f, o.xlabel);
        fprintf(f, "</text>\n");
    }
    if (o.ylabel) {
        fprintf(f, "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">", (fr.py0 + fr.py1) / 2);
        xml_text(f, o.ylabel);
        fprintf(f, "</text>\n");
    }
    /* the series: binned to pixel columns when longer than the plot is wide */
    int cols = (int)(fr.px1 - fr.px0);
    for (int k = 0; k < n_series; k++) {
        const char *color = s[k].color ? s[k].color : COLORS[k % 6];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
        int bin = -1, cnt = 0, pts = 0;
        double sx = 0, sy = 0;
        int binned = s[k].n > 2 * cols;
        for (int i = 0; i <= s[k].n; i++) {
            int last = i == s[k].n;
            if (!last && !usable(&fr, s[k].x[i], s[k].y[i])) continue;
            double X = last ? 0 : fx(&fr, s[k].x[i]), Y = last ? 0 : ty(&fr, s[k].y[i]);
            int b = binned && !last ? (int)(X - fr.px0) : i;
            if ((last || b != bin) && cnt) {
                fprintf(f, "%s%.1f,%.1f", pts++ ? " " : "", sx / cnt, fy(&fr, sy / cnt));
                cnt = 0, sx = sy = 0;
            }
            if (last) break;
            bin = b, sx += X, sy += Y, cnt++;
        }
        fprintf(f, "\"/>\n");
        if (s[k].markers)
            for (int i = 0; i < s[k].n; i++)
                if (usable(&fr, s[k].x[i], s[k].y[i]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", fx(&fr, s[k].x[i]),
                            fy(&fr, ty(&fr, s[k].y[i])), color);
        /* legend, top right */
        double ly = fr.py1 + 16 + 18 * k;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                fr.px1 - 150, ly - 4, fr.px1 - 130, ly - 4, color);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", fr.px1 - 124, ly);
        xml_text(f, s[k].label ? s[k].label : "");
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
    int bad = ferror(f) != 0;
    if (fclose(f) != 0) bad = 1;
    gm_status st = GM_OK;
    if (bad || rename(tmp, path) != 0) {
        st = gm_fail(GM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return st;
}
