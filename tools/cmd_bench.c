/* keel bench: placeholder until the benchmark lands. */
#include <stdio.h>

#include "cli.h"

int keel_cmd_bench(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "keel bench: not built yet\n");
  return 2;
}
