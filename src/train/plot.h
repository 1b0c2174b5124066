/* Line charts as SVG files: the training loss curve (train and validation against step) and any other
 * curve of y against x (reward, KL, learning rate). Plain SVG 1.1 that browsers and image viewers
 * render, written atomically so a reader never sees half a picture. */
#ifndef GM_TRAIN_PLOT_H
#define GM_TRAIN_PLOT_H

#include "gemma.h"

typedef struct gm_plot_series {
    const char *label;   /* legend text */
    const double *x, *y; /* n points; points with a non-finite x or y are left out */
    int n;
    const char *color;   /* an SVG color ("#1f77b4"), or NULL for the series' default */
    int markers;         /* 1: a dot at every point (sparse series such as the validation loss) */
} gm_plot_series;

typedef struct gm_plot_opts {
    const char *title, *xlabel, *ylabel; /* any may be NULL */
    int width, height;                   /* pixels; 0 = 800 x 480 */
    int log_y;                           /* 1: logarithmic y axis (points with y <= 0 are left out) */
} gm_plot_opts;

/* Draw the series on shared axes (ranges from the data, round-number ticks, a legend) and write the
 * SVG to path through a temporary file renamed over it. A series with more points than the plot is
 * wide is averaged into one point per pixel column. */
gm_status gm_plot_svg(const char *path, const gm_plot_opts *o, const gm_plot_series *s, int n_series);

#endif
