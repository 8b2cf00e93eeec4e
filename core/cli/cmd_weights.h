/* usi weights: tools for weights files. */
#ifndef USI_CLI_CMD_WEIGHTS_H
#define USI_CLI_CMD_WEIGHTS_H

int usi_cmd_weights(int argc, char **argv);

#endif
