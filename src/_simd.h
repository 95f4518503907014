/* The vector width the kernels are compiled for: FASTCONV_LANES float32 values, set per
   ISA level by setup.py from fastconv/_levels.py (8 for the baseline and AVX2 levels, 16
   for AVX-512). The Winograd stage transforms LANES channels at once and rounds its
   channel pitches up to LANES; the GEMM kernel's panels are two vectors wide. */
#ifndef FASTCONV_SIMD_H
#define FASTCONV_SIMD_H
#include <string.h>

#ifndef FASTCONV_LANES
#define FASTCONV_LANES 8
#endif
#define FASTCONV_PANEL (2 * FASTCONV_LANES)

#ifdef __GNUC__
/* The helpers are inlined, so that no vector crosses a call: GCC's warning that passing
   one wider than the level's registers has another ABI does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
/* One vector of LANES float32 values (GCC/Clang vector extensions): the compiler maps it
   onto the level's registers, a 64-byte vector onto two 32-byte halves where the level
   has no wider ones. Loads and stores through memcpy are unaligned moves. */
typedef float fastconv_vector __attribute__((vector_size(4 * FASTCONV_LANES)));

static inline fastconv_vector fastconv_load(const float *p) {
    fastconv_vector v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void fastconv_store(float *p, fastconv_vector v) {
    memcpy(p, &v, sizeof v);
}
#endif
#endif
