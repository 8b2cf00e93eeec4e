/* The data commands of `usi`. argv[0] is the subcommand name; each returns
 * the process exit status and prints its errors to stderr. */
#ifndef USI_DATA_COMMANDS_H
#define USI_DATA_COMMANDS_H

/* usi data import-idx [--src DIR] [--out DIR] [--force] */
int usi_cmd_data(int argc, char **argv);
/* usi preview CONFIG --out grid.png [--n 32] [--set key=value]... */
int usi_cmd_preview(int argc, char **argv);

/* The preview grid: tiles enlarged by a whole `scale` to at least
 * USI_PREVIEW_MIN_TILE pixels, each over a target bar and USI_PREVIEW_LINES
 * lines of class names, USI_PREVIEW_GAP pixels apart. */
enum {
    USI_PREVIEW_MIN_TILE = 96, USI_PREVIEW_BAR = 8, USI_PREVIEW_LINE = 14, USI_PREVIEW_LINES = 2,
    USI_PREVIEW_GAP = 4
};
typedef struct usi_preview_layout {
    int scale, tile, label, cols, rows, width, height;
} usi_preview_layout;
usi_preview_layout usi_preview_layout_for(int side, int n);

#endif
