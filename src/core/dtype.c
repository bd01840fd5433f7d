/* Element types: sizes, names, half/bfloat16 and narrow (float8, float4, 4- and 2-bit) conversions. */
#include <math.h>
#include <string.h>

#include <keel/dtype.h>

size_t keel_dtype_size(keel_dtype t) {
  switch (t) {
    case KEEL_FLOAT32: case KEEL_INT32: case KEEL_UINT32: return 4;
    case KEEL_UINT8: case KEEL_INT8: case KEEL_BOOL: return 1;
    /* narrow types are stored unpacked, one byte each (see dtype.h) */
    case KEEL_FLOAT8E4M3FN: case KEEL_FLOAT8E4M3FNUZ: case KEEL_FLOAT8E5M2: case KEEL_FLOAT8E5M2FNUZ:
    case KEEL_UINT4: case KEEL_INT4: case KEEL_FLOAT4E2M1: case KEEL_FLOAT8E8M0: case KEEL_UINT2: case KEEL_INT2:
      return 1;
    case KEEL_UINT16: case KEEL_INT16: case KEEL_FLOAT16: case KEEL_BFLOAT16: return 2;
    case KEEL_INT64: case KEEL_FLOAT64: case KEEL_UINT64: case KEEL_COMPLEX64: return 8;
    case KEEL_COMPLEX128: return 16;
    case KEEL_STRING: return sizeof(keel_string);
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
    {KEEL_BFLOAT16, "bfloat16"}, {KEEL_FLOAT8E4M3FN, "float8e4m3fn"}, {KEEL_FLOAT8E4M3FNUZ, "float8e4m3fnuz"},
    {KEEL_FLOAT8E5M2, "float8e5m2"}, {KEEL_FLOAT8E5M2FNUZ, "float8e5m2fnuz"}, {KEEL_UINT4, "uint4"},
    {KEEL_INT4, "int4"}, {KEEL_FLOAT4E2M1, "float4e2m1"}, {KEEL_FLOAT8E8M0, "float8e8m0"}, {KEEL_UINT2, "uint2"},
    {KEEL_INT2, "int2"},
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

/* ---- narrow types --------------------------------------------------------------------------------- */

int keel_dtype_is_narrow(keel_dtype t) { return t >= KEEL_FLOAT8E4M3FN && t <= KEEL_INT2; }

int keel_dtype_pack_factor(keel_dtype t) {
  switch (t) {
    case KEEL_UINT4: case KEEL_INT4: case KEEL_FLOAT4E2M1: return 2;
    case KEEL_UINT2: case KEEL_INT2: return 4;
    default: return 1;
  }
}

int32_t keel_narrow_int_value(keel_dtype t, uint8_t b) {
  switch (t) {
    case KEEL_INT4: return (int32_t)((b & 0xf) ^ 8) - 8;
    case KEEL_UINT4: return b & 0xf;
    case KEEL_INT2: return (int32_t)((b & 3) ^ 2) - 2;
    case KEEL_UINT2: return b & 3;
    default: return b;
  }
}

uint8_t keel_narrow_int_wrap(keel_dtype t, int64_t v) {
  /* Work on the unsigned bits so negative values wrap without implementation-defined shifts. */
  uint8_t low = (uint8_t)((uint64_t)v & 0xff);
  return (uint8_t)keel_narrow_int_value(t, low);
}

uint8_t keel_narrow_canonical(keel_dtype t, uint8_t bits) {
  switch (t) {
    case KEEL_INT4: case KEEL_UINT4: case KEEL_INT2: case KEEL_UINT2:
      return (uint8_t)keel_narrow_int_value(t, bits);
    case KEEL_FLOAT4E2M1: return bits & 0xf;
    default: return bits;
  }
}

/* A small float format: mantissa bits, exponent bias, largest finite value, and how nan/inf/-0 look. */
typedef struct fp_format {
  int mbits, ebits, bias;
  double max;
  uint8_t sign_bit; /* 0x80, or 0x08 for float4 */
  int fnuz;         /* single nan 0x80, no -0, no inf */
  int has_inf;      /* e5m2 only */
  int has_nan;      /* all but float4 */
} fp_format;

static const fp_format *fp_fmt(keel_dtype t) {
  static const fp_format e4m3fn = {3, 4, 7, 448.0, 0x80, 0, 0, 1};
  static const fp_format e4m3fnuz = {3, 4, 8, 240.0, 0x80, 1, 0, 1};
  static const fp_format e5m2 = {2, 5, 15, 57344.0, 0x80, 0, 1, 1};
  static const fp_format e5m2fnuz = {2, 5, 16, 57344.0, 0x80, 1, 0, 1};
  static const fp_format e2m1 = {1, 2, 1, 6.0, 0x08, 0, 0, 0};
  switch (t) {
    case KEEL_FLOAT8E4M3FN: return &e4m3fn;
    case KEEL_FLOAT8E4M3FNUZ: return &e4m3fnuz;
    case KEEL_FLOAT8E5M2: return &e5m2;
    case KEEL_FLOAT8E5M2FNUZ: return &e5m2fnuz;
    case KEEL_FLOAT4E2M1: return &e2m1;
    default: return NULL;
  }
}

float keel_fp8_to_float(keel_dtype t, uint8_t code) {
  if (t == KEEL_FLOAT8E8M0) return code == 0xff ? NAN : ldexpf(1.0f, (int)code - 127);
  const fp_format *F = fp_fmt(t);
  if (!F) return NAN;
  if (t == KEEL_FLOAT4E2M1) code &= 0xf;
  if (F->fnuz && code == 0x80) return NAN;
  int neg = (code & F->sign_bit) != 0;
  unsigned mag = code & (unsigned)(F->sign_bit - 1);
  unsigned e = mag >> F->mbits, m = mag & ((1u << F->mbits) - 1);
  unsigned emax = (1u << F->ebits) - 1;
  float v;
  if (t == KEEL_FLOAT8E4M3FN && mag == 0x7f) return neg ? -NAN : NAN;
  if (F->has_inf && e == emax) {
    v = m ? NAN : INFINITY;
  } else if (e == 0) { /* subnormal: m * 2^(1 - bias - mbits) */
    v = ldexpf((float)m, 1 - F->bias - F->mbits);
  } else {
    v = ldexpf((float)((1u << F->mbits) | m), (int)e - F->bias - F->mbits);
  }
  return neg ? -v : v;
}

uint8_t keel_double_to_fp8(keel_dtype t, double f, int saturate) {
  if (t == KEEL_FLOAT8E8M0) return keel_float_to_e8m0((float)f, saturate, KEEL_E8M0_UP);
  const fp_format *F = fp_fmt(t);
  if (!F) return 0;
  const int neg = signbit(f) != 0;
  const uint8_t sign = neg ? F->sign_bit : 0;
  const uint8_t maxcode = (uint8_t)(t == KEEL_FLOAT8E4M3FN ? 0x7e : F->sign_bit == 0x08 ? 0x7 : F->has_inf ? 0x7b : 0x7f);
  if (isnan(f)) {
    if (F->fnuz) return 0x80;
    if (t == KEEL_FLOAT8E5M2) return (uint8_t)(0x7e | sign);
    if (t == KEEL_FLOAT8E4M3FN) return (uint8_t)(0x7f | sign);
    /* float4 has no nan; ml_dtypes (ONNX's reference) yields a zero with the sign bit flipped. */
    return (uint8_t)(neg ? 0 : F->sign_bit);
  }
  double a = fabs(f);
  uint8_t mag;
  if (isinf(a)) goto overflow;
  {
    const int emin = 1 - F->bias; /* exponent of the smallest normal */
    int e2;
    if (a == 0) goto zero;
    frexp(a, &e2);
    int ex = e2 - 1 < emin ? emin : e2 - 1;                       /* exponent of a's binade (or subnormal) */
    double r = ldexp(nearbyint(ldexp(a, F->mbits - ex)), ex - F->mbits); /* round to nearest even */
    if (r > F->max) goto overflow;
    if (r == 0) goto zero;
    frexp(r, &e2);
    int er = e2 - 1;
    if (er < emin) {
      mag = (uint8_t)ldexp(r, F->mbits - emin);
    } else {
      unsigned m = (unsigned)ldexp(r, F->mbits - er) - (1u << F->mbits);
      mag = (uint8_t)(((unsigned)(er + F->bias) << F->mbits) | m);
    }
    return (uint8_t)(mag | sign);
  }
zero:
  return F->fnuz ? 0 : sign; /* fnuz has no -0 */
overflow:
  if (saturate || !F->has_nan) return (uint8_t)(maxcode | sign);
  if (F->fnuz) return 0x80;
  if (F->has_inf) return (uint8_t)(0x7c | sign);
  return (uint8_t)(0x7f | sign);
}

uint8_t keel_float_to_fp8(keel_dtype t, float f, int saturate) {
  if (t == KEEL_FLOAT8E8M0) return keel_float_to_e8m0(f, saturate, KEEL_E8M0_UP);
  return keel_double_to_fp8(t, (double)f, saturate);
}

/* The float32 exponent field, rounded by the fraction as the ONNX reference does; sign is ignored. */
uint8_t keel_float_to_e8m0(float f, int saturate, keel_e8m0_round mode) {
  const uint32_t u = f32_bits(f);
  uint32_t e = (u >> 23) & 0xff;
  if (e == 0xff) return 0xff; /* nan and inf */
  int up = 0;
  if (mode == KEEL_E8M0_NEAREST) {
    /* guard bit set and (round, sticky, or a normal's implicit leading one as the lsb) */
    int g = (u & 0x400000u) != 0, r = (u & 0x200000u) != 0, s = (u & 0x1fffffu) != 0, lsb = e > 0;
    up = g && (r || s || lsb);
  } else if (mode == KEEL_E8M0_UP) {
    up = (u & 0x7fffffu) != 0;
  }
  if (up && saturate && e == 0xfe) up = 0;
  return (uint8_t)(e + (uint32_t)up);
}
