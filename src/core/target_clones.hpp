// CRACKSEG_CLONES: compile a hot loop for AVX-512, AVX2 and the baseline in one binary (GCC
// target_clones picks the variant at load time; the build has no -march, so one binary
// runs on any x86-64). Helpers such a function calls must be always_inline to be compiled
// for each variant (a call would run baseline code). Empty on other compilers/targets.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CRACKSEG_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CRACKSEG_CLONES
#endif
