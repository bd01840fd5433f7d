/* Replays files through a fuzz harness without libFuzzer, so the gcc (and ASan/UBSan) builds can run the
 * seed corpus and every regression as a ctest. Arguments are files or folders (each regular file inside,
 * not recursive, dotfiles and *.md skipped). `--skip LIST` names a file of "target/name" lines (text after
 * '#' ignored): regressions of open bugs, skipped unless KEEL_RUN_OPEN_BUGS=1. Exits non-zero when an
 * argument cannot be read; a harness bug aborts. */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return 1;
  }
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (!buf) break;
    if (n == cap) {
      uint8_t *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "replay: out of memory reading %s\n", path);
    return 1;
  }
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

static char skip_list[64][256];
static int n_skip;

static void load_skip_list(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "replay: cannot open skip list %s\n", path);
    return;
  }
  char line[512];
  while (n_skip < 64 && fgets(line, sizeof line, f)) {
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *p = line, *e;
    while (*p == ' ' || *p == '\t') p++;
    for (e = p; *e && *e != ' ' && *e != '\t' && *e != '\n' && *e != '\r'; e++) {}
    *e = 0;
    if (*p && strlen(p) < sizeof skip_list[0]) strcpy(skip_list[n_skip++], p);
  }
  fclose(f);
}

/* Listed entries match the end of the path, at a '/' boundary ("model/x.onnx" matches ".../model/x.onnx"). */
static int skipped(const char *path) {
  size_t lp = strlen(path);
  for (int i = 0; i < n_skip; i++) {
    size_t ls = strlen(skip_list[i]);
    if (ls <= lp && !strcmp(path + lp - ls, skip_list[i]) && (ls == lp || path[lp - ls - 1] == '/')) return 1;
  }
  return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int replay_dir(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "replay: cannot open folder %s\n", dir);
    return 1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *ent;
  while ((ent = readdir(d))) {
    if (ent->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof *names);
      if (!nn) {
        rc = 1;
        break;
      }
      names = nn;
    }
    size_t len = strlen(dir) + strlen(ent->d_name) + 2;
    names[n] = malloc(len);
    if (!names[n]) {
      rc = 1;
      break;
    }
    snprintf(names[n], len, "%s/%s", dir, ent->d_name);
    n++;
  }
  closedir(d);
  /* Sorted, so a failure reproduces in the same order on every machine. */
  if (n) qsort(names, n, sizeof *names, cmp_names);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    size_t len = strlen(names[i]);
    bool md = len >= 3 && !strcmp(names[i] + len - 3, ".md"), txt = len >= 4 && !strcmp(names[i] + len - 4, ".txt");
    if (!rc && stat(names[i], &st) == 0 && S_ISREG(st.st_mode) && !md && !txt) {
      if (skipped(names[i])) {
        printf("skipped (open bug, KEEL_RUN_OPEN_BUGS=1 runs it): %s\n", names[i]);
      } else {
        printf("%s\n", names[i]);
        fflush(stdout); /* the last name printed is the culprit if the harness crashes */
        rc |= replay_file(names[i]);
        (*count)++;
      }
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  size_t count = 0;
  int rc = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
    return 2;
  }
  const char *run_open = getenv("KEEL_RUN_OPEN_BUGS");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--skip") && i + 1 < argc) {
      if (!run_open || strcmp(run_open, "1")) load_skip_list(argv[i + 1]);
      i++;
      continue;
    }
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s does not exist\n", argv[i]);
      rc = 1;
    } else if (S_ISDIR(st.st_mode)) {
      rc |= replay_dir(argv[i], &count);
    } else {
      rc |= replay_file(argv[i]);
      count++;
    }
  }
  printf("replayed %zu inputs\n", count);
  return rc;
}
