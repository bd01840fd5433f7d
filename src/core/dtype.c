/* Element types: sizes, names and half/bfloat16 conversions. */
#include <math.h>
#include <string.h>

#include <keel/dtype.h>

size_t keel_dtype_size(keel_dtype t) {
  switch (t) {
    case KEEL_FLOAT32: case KEEL_INT32: case KEEL_UINT32: return 4;
    case KEEL_UINT8: case KEEL_INT8: case KEEL_BOOL: return 1;
    case KEEL_UINT16: case KEEL_INT16: case KEEL_FLOAT16: case KEEL_BFLOAT16: return 2;
    case KEEL_INT64: case KEEL_FLOAT64: case KEEL_UINT64: case KEEL_COMPLEX64: return 8;
    case KEEL_COMPLEX128: return 16;
    default: return 0;
  }
}

static const struct {
  keel_dtype t;
  const char *name;
} names[] = {
    {KEEL_FLOAT32, "float32"}, {KEEL_UINT8, "uint8"},     {KEEL_INT8, "int8"},       {KEEL_UINT16, "uint16"},
    {KEEL_INT16, "int16"},     {KEEL_INT32, "int32"},     {KEEL_INT64, "int64"},     {KEEL_STRING, "string"},
    {KEEL_BOOL, "bool"},       {KEEL_FLOAT16, "float16"}, {KEEL_FLOAT64, "float64"}, {KEEL_UINT32, "uint32"},
    {KEEL_UINT64, "uint64"},   {KEEL_COMPLEX64, "complex64"}, {KEEL_COMPLEX128, "complex128"},
    {KEEL_BFLOAT16, "bfloat16"},
};

const char *keel_dtype_name(keel_dtype t) {
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].t == t) return names[i].name;
  return t == KEEL_DTYPE_UNDEFINED ? "undefined" : "unknown";
}

keel_dtype keel_dtype_from_name(const char *name) {
  if (!name) return KEEL_DTYPE_UNDEFINED;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(names[i].name, name)) return names[i].t;
  if (!strcmp(name, "float")) return KEEL_FLOAT32;
  if (!strcmp(name, "double")) return KEEL_FLOAT64;
  if (!strcmp(name, "half")) return KEEL_FLOAT16;
  return KEEL_DTYPE_UNDEFINED;
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float keel_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) {
    /* zero or subnormal: value = man * 2^-24 */
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
  return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t keel_float_to_half(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t absu = u & 0x7fffffffu;
  if (absu >= 0x7f800000u) /* inf or nan (keep a quiet nan) */
    return sign | 0x7c00 | (absu > 0x7f800000u ? 0x200 : 0);
  if (absu >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: overflow to inf */
  if (absu < 0x38800000u) {
    /* subnormal half (or zero): round(|f| / 2^-24) to nearest even */
    float a = bits_f32(absu);
    float scaled = a * 16777216.0f; /* 2^24 */
    uint32_t m = (uint32_t)scaled;
    float frac = scaled - (float)m;
    if (frac > 0.5f || (frac == 0.5f && (m & 1))) m++;
    return sign | (uint16_t)m;
  }
  /* normal: rebias exponent, round mantissa to nearest even */
  uint32_t mant = absu & 0x7fffff, exp = (absu >> 23) - 112;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return sign | (uint16_t)h;
}

float keel_bfloat16_to_float(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t keel_float_to_bfloat16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
  uint32_t rounding = 0x7fff + ((u >> 16) & 1);
  return (uint16_t)((u + rounding) >> 16);
}
