# cython: boundscheck=False, wraparound=False, cdivision=True
"""What the processor supports: the only place that asks it (CPUID, through the compiler)."""

cdef extern from *:
    """
    /* The compiler's CPUID probe also checks that the operating system saves the wide
       registers (XGETBV), which CPUID alone does not tell. */
    #include <string.h>
    #if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    #define FASTCONV_HAS_CPU_PROBE 1
    static int fastconv_cpu_supports(const char *feature) {
        __builtin_cpu_init();
        if (!strcmp(feature, "avx2")) return __builtin_cpu_supports("avx2");
        if (!strcmp(feature, "fma")) return __builtin_cpu_supports("fma");
        if (!strcmp(feature, "avx512f")) return __builtin_cpu_supports("avx512f");
        if (!strcmp(feature, "avx512bw")) return __builtin_cpu_supports("avx512bw");
        if (!strcmp(feature, "avx512cd")) return __builtin_cpu_supports("avx512cd");
        if (!strcmp(feature, "avx512dq")) return __builtin_cpu_supports("avx512dq");
        if (!strcmp(feature, "avx512vl")) return __builtin_cpu_supports("avx512vl");
        return 0;
    }
    #else
    #define FASTCONV_HAS_CPU_PROBE 0
    static int fastconv_cpu_supports(const char *feature) { return 0; }
    #endif
    """
    int FASTCONV_HAS_CPU_PROBE
    int fastconv_cpu_supports(const char* feature)

# The features the levels need (fastconv/_levels.py): __builtin_cpu_supports takes string
# literals only, and older compilers reject names they do not know.
FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")


def supports(str feature):
    """Whether the processor (and its operating system) supports an x86 feature of
    FEATURES; False on other processors and compilers."""
    if feature not in FEATURES:
        raise ValueError(f"supports: feature must be one of {FEATURES}, got {feature!r}")
    return bool(fastconv_cpu_supports(feature.encode()))
