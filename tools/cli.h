/* The keel command: subcommands and shared helpers. */
#ifndef KEEL_TOOLS_CLI_H
#define KEEL_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <keel/keel.h>

int keel_cmd_run(int argc, char **argv);
int keel_cmd_test(int argc, char **argv);
int keel_cmd_info(int argc, char **argv);
int keel_cmd_bench(int argc, char **argv);
int keel_cmd_ops(int argc, char **argv);

/* --shape NAME=DIMS overrides ("1x3x224x224" or "1,3,224,224"). */
typedef struct cli_shape {
  const char *name;
  int ndim;
  int64_t dims[KEEL_MAX_DIMS];
} cli_shape;

bool cli_parse_shape(const char *arg, cli_shape *out);
/* Concrete shape for input i: --shape override, else declared dims with symbolic dims set to 1. */
void cli_input_shape(const keel_io_info *info, const cli_shape *shapes, int n_shapes, int64_t *dims, int *ndim);
/* A tensor of deterministic pseudo-random data (floats in [-1,1), integers in [0,2), bools alternating). */
keel_status *cli_generate_input(keel_dtype dtype, const int64_t *dims, int ndim, uint64_t seed, keel_tensor **out);
/* Print "name: dtype[shape] min=.. max=.. mean=.. first=[...]" */
void cli_print_summary(const char *name, keel_tensor *t);
/* Print an error status with a prefix to stderr and free it; returns 1. */
int cli_fail(const char *what, keel_status *s);

#endif
