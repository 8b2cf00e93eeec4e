/* The data commands of `usi`. argv[0] is the subcommand name; each returns
 * the process exit status and prints its errors to stderr. */
#ifndef USI_DATA_COMMANDS_H
#define USI_DATA_COMMANDS_H

/* usi data import-idx [--src DIR] [--out DIR] [--force] */
int usi_cmd_data(int argc, char **argv);
/* usi preview CONFIG --out grid.png [--n 32] [--set key=value]... */
int usi_cmd_preview(int argc, char **argv);

#endif
