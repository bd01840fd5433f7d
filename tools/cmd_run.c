/* keel run: run a model once on given or generated inputs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "onnx/onnx_import.h"

#define MAX_ARGS 64

typedef struct {
  const char *name;
  const char *path;
} input_arg;

int keel_cmd_run(int argc, char **argv) {
  const char *model = NULL, *outdir = NULL;
  input_arg given[MAX_ARGS];
  cli_shape shapes[MAX_ARGS];
  int n_given = 0, n_shapes = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--input") && i + 1 < argc) {
      char *a = argv[++i], *eq = strchr(a, '=');
      if (!eq || n_given >= MAX_ARGS) {
        fprintf(stderr, "keel run: --input expects NAME=FILE.pb, got '%s'\n", a);
        return 2;
      }
      *eq = 0;
      given[n_given].name = a;
      given[n_given++].path = eq + 1;
    } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
      if (n_shapes >= MAX_ARGS || !cli_parse_shape(argv[++i], &shapes[n_shapes])) {
        fprintf(stderr, "keel run: --shape expects NAME=DIMS like data=1x3x224x224, got '%s'\n", argv[i]);
        return 2;
      }
      n_shapes++;
    } else if (!strcmp(argv[i], "--output-dir") && i + 1 < argc) {
      outdir = argv[++i];
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "keel run: unknown option '%s'\nusage: keel run MODEL [--input NAME=FILE.pb]... [--shape NAME=DIMS]... [--output-dir DIR]\n", argv[i]);
      return 2;
    } else if (!model) {
      model = argv[i];
    } else {
      fprintf(stderr, "keel run: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!model) {
    fprintf(stderr, "usage: keel run MODEL [--input NAME=FILE.pb]... [--shape NAME=DIMS]... [--output-dir DIR]\n");
    return 2;
  }
  keel_engine *e = NULL;
  keel_status *s = keel_engine_load_file(model, NULL, &e);
  if (s) return cli_fail("cannot load model", s);
  size_t n_in = keel_engine_input_count(e), n_out = keel_engine_output_count(e);
  keel_tensor **ins = calloc(n_in + 1, sizeof *ins), **outs = calloc(n_out + 1, sizeof *outs);
  int rc = 1;
  if (!ins || !outs) {
    fprintf(stderr, "keel run: out of memory\n");
    goto done;
  }
  for (int g = 0; g < n_given; g++) {
    bool found = false;
    for (size_t i = 0; i < n_in; i++) {
      keel_io_info info;
      keel_engine_input_info(e, i, &info);
      if (strcmp(info.name, given[g].name)) continue;
      found = true;
      void *data;
      size_t size;
      s = keel_read_file(given[g].path, 0, &data, &size);
      if (!s) {
        s = keel_onnx_decode_tensor(data, size, &ins[i], NULL);
        free(data);
      }
      if (s) {
        char what[512];
        snprintf(what, sizeof what, "cannot read input '%s' from %s", given[g].name, given[g].path);
        cli_fail(what, s);
        goto done;
      }
    }
    if (!found) {
      fprintf(stderr, "keel run: the model has no input named '%s' (inputs:", given[g].name);
      for (size_t i = 0; i < n_in; i++) {
        keel_io_info info;
        keel_engine_input_info(e, i, &info);
        fprintf(stderr, " %s", info.name);
      }
      fprintf(stderr, ")\n");
      goto done;
    }
  }
  for (size_t i = 0; i < n_in; i++) {
    if (ins[i]) continue;
    keel_io_info info;
    keel_engine_input_info(e, i, &info);
    int64_t dims[KEEL_MAX_DIMS];
    int ndim;
    cli_input_shape(&info, shapes, n_shapes, dims, &ndim);
    keel_dtype dt = info.dtype == KEEL_DTYPE_UNDEFINED ? KEEL_FLOAT32 : info.dtype;
    s = cli_generate_input(dt, dims, ndim, 1234 + i, &ins[i]);
    if (s) {
      cli_fail("cannot create input", s);
      goto done;
    }
    char shape[256];
    printf("input %s: generated %s%s\n", info.name, keel_dtype_name(dt), keel_shape_format(dims, ndim, shape, sizeof shape));
  }
  s = keel_engine_run(e, ins, n_in, outs, n_out);
  if (s) {
    cli_fail("run failed", s);
    goto done;
  }
  if (outdir && mkdir(outdir, 0755) && errno != EEXIST) {
    fprintf(stderr, "keel run: cannot create output directory %s: %s\n", outdir, strerror(errno));
    goto done;
  }
  for (size_t k = 0; k < n_out; k++) {
    keel_io_info info;
    keel_engine_output_info(e, k, &info);
    cli_print_summary(info.name, outs[k]);
    if (outdir) {
      void *buf;
      size_t size;
      s = keel_onnx_encode_tensor(outs[k], info.name, &buf, &size);
      if (s) {
        cli_fail("cannot encode output", s);
        goto done;
      }
      char path[4096];
      snprintf(path, sizeof path, "%s/output_%zu.pb", outdir, k);
      FILE *f = fopen(path, "wb");
      size_t wrote = f ? fwrite(buf, 1, size, f) : 0;
      int closed = f ? fclose(f) : EOF;
      free(buf);
      if (!f || wrote != size || closed) {
        fprintf(stderr, "keel run: cannot write %s: %s\n", path, strerror(errno));
        goto done;
      }
    }
  }
  rc = 0;
done:
  for (size_t i = 0; ins && i < n_in; i++) keel_tensor_release(ins[i]);
  for (size_t k = 0; outs && k < n_out; k++) keel_tensor_release(outs[k]);
  free(ins);
  free(outs);
  keel_engine_release(e);
  return rc;
}
