/* A file being written in place of another (an atomic save's temporary)
 * that a second Ctrl-C, which ends the process at once, removes first
 * (stop.c): an interrupted save leaves the last whole file and nothing
 * else. One at a time; begin copies the path. */
#ifndef USI_CORE_TRAIN_STOP_H
#define USI_CORE_TRAIN_STOP_H

void usi_stop_temp_begin(const char *path);
void usi_stop_temp_end(void);

#endif
