#pragma once
#include <cstdint>
#if defined(_MSC_VER)
#include <intrin.h>
#endif

namespace defectspace {

/// Index of the lowest set bit of v (v != 0).
inline unsigned ctz64(std::uint64_t v) {
#if defined(_MSC_VER)
  unsigned long i;
  _BitScanForward64(&i, v);
  return static_cast<unsigned>(i);
#else
  return static_cast<unsigned>(__builtin_ctzll(v));
#endif
}

/// Byte offset, within 8 bytes copied into a uint64, of the byte holding bit `bit`.
inline unsigned byte_of_bit(unsigned bit) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return 7U - (bit >> 3);
#else
  return bit >> 3;
#endif
}

/// High 64 bits of a * b.
inline std::uint64_t mul_high(std::uint64_t a, std::uint64_t b, std::uint64_t* low) {
#if defined(_MSC_VER)
  std::uint64_t hi;
  *low = _umul128(a, b, &hi);
  return hi;
#else
  const __uint128_t m = static_cast<__uint128_t>(a) * b;
  *low = static_cast<std::uint64_t>(m);
  return static_cast<std::uint64_t>(m >> 64);
#endif
}

}  // namespace defectspace
