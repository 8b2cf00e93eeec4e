/* A stand-in `usi` for the data commands, so tests and bench scripts can run
 * them before (and independently of) the main CLI. */
#include <stdio.h>
#include <string.h>

#include "data/commands.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "preview")) return usi_cmd_preview(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "data")) return usi_cmd_data(argc - 1, argv + 1);
    fprintf(stderr, "usage: %s data import-idx ... | preview CONFIG --out grid.png [--n N]\n", argv[0]);
    return 2;
}
