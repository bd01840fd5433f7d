/* keel: run, test, inspect and benchmark ONNX models. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "runtime/device.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: keel <command> [options]\n"
          "\n"
          "commands:\n"
          "  run MODEL [--input NAME=FILE.pb]... [--shape NAME=DIMS]... [--output-dir DIR]\n"
          "                      run a model once and summarize its outputs\n"
          "  test [--rtol R] [--atol A] [--skip-list FILE] CASE_DIR...\n"
          "                      run ONNX test cases (model.onnx + test_data_set_*) and compare outputs\n"
          "  info MODEL [--shape NAME=DIMS]...\n"
          "                      inputs, outputs, opsets, operators, parameters and planned memory\n"
          "  bench MODEL [--shape NAME=DIMS]... [--outputs fresh|preallocated|persistent|all]\n"
          "        [--iterations N] [--duration S] [--warmup S] [--threads N] [--device cpu|sim]\n"
          "        [--inflight K] [--json FILE]\n"
          "                      measure latency, throughput and allocations per call (like trtexec)\n"
          "  ops                 the operators this keel implements, with their opset ranges\n"
          "  --version           version and compiled-in backends\n"
          "  --help              this message\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    /* keel_backends() names the CPU kernel backends; the CUDA backend lives behind the runtime's devices */
    bool cuda = strstr(keel_device_backends(), "cuda") != NULL;
    printf("keel %s\nbackends: %s%s\ndevices: %s\n", keel_version(), keel_backends(), cuda ? " cuda" : "",
           keel_device_backends());
    return 0;
  }
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "run")) return keel_cmd_run(argc - 1, argv + 1);
  if (!strcmp(cmd, "test")) return keel_cmd_test(argc - 1, argv + 1);
  if (!strcmp(cmd, "info")) return keel_cmd_info(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench")) return keel_cmd_bench(argc - 1, argv + 1);
  if (!strcmp(cmd, "ops")) return keel_cmd_ops(argc - 1, argv + 1);
  fprintf(stderr, "keel: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
