//! A small pseudo-random number generator whose output is part of the project's on-disk
//! contract: a resumed training run must draw exactly what the interrupted run would have drawn,
//! across builds and crate upgrades. Hence no external `rand` crate (whose algorithms and
//! sampling methods may change between versions) and a fixed, documented algorithm:
//!
//! * Keying: [`Rng::for_stream`] hashes a seed and a *stream path* (e.g.
//!   `[tag, domain, epoch, position]`) into one 64-bit key with the SplitMix64 finaliser, so
//!   every independent random decision gets its own generator and no decision depends on how
//!   many numbers an earlier one consumed.
//! * State: the key seeds SplitMix64, whose first four outputs fill the xoshiro256** state
//!   (the initialisation its authors recommend).
//! * Output: xoshiro256** (Blackman & Vigna, 2018).
//! * [`Rng::below`] uses Lemire's multiply-and-reject method (unbiased), [`Rng::next_f64`] the
//!   top 53 bits, and [`Rng::shuffle`] Fisher–Yates from the last element down.
//!
//! Changing any of this changes which images and crops every step sees; the tests pin the
//! output values so that such a change cannot go unnoticed.

/// 2⁶⁴ / φ, the SplitMix64 increment.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (Stafford's "Mix13" variant): a bijection on `u64` with
/// good avalanche, used both for the generator and for hashing stream paths.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 (Steele, Lea & Flood 2014): only used to expand a 64-bit key into xoshiro state.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is `mix64(seed + γ)`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }
}

/// xoshiro256** with the keying described in the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed` alone (the same as `for_stream(seed, &[])`).
    pub fn new(seed: u64) -> Self {
        Self::for_stream(seed, &[])
    }

    /// A generator for one independent stream of decisions, identified by `stream` under `seed`.
    ///
    /// The key is `h₀ = mix64(seed)`, `hₖ₊₁ = mix64((hₖ ⊕ idₖ) + γ)`; for a fixed prefix,
    /// distinct ids give distinct keys because `mix64` is a bijection.
    pub fn for_stream(seed: u64, stream: &[u64]) -> Self {
        let key = stream.iter().fold(mix64(seed), |h, &id| mix64((h ^ id).wrapping_add(GOLDEN_GAMMA)));
        let mut sm = SplitMix64::new(key);
        // Four consecutive SplitMix64 outputs are distinct (mix64 is a bijection of distinct
        // inputs), so the state is never all zero, the one state xoshiro must avoid.
        Self { s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()] }
    }

    /// A generator with the given raw xoshiro256** state (for reference test vectors).
    /// An all-zero state would only ever yield zeros; it is replaced by `Rng::new(0)`.
    pub fn from_state(s: [u64; 4]) -> Self {
        if s == [0; 4] {
            Self::new(0)
        } else {
            Self { s }
        }
    }

    /// The next uniformly distributed 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform value in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, n)`, without modulo bias; `below(0)` is 0 and draws nothing.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire (2019): the high word of x·n is uniform once the low word's biased region
        // (below 2⁶⁴ mod n) is rejected.
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// `true` with probability `p` (one draw; `p ≤ 0` is never, `p ≥ 1` always).
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Shuffles `items` uniformly in place (Fisher–Yates, last position first).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A uniformly shuffled `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}
