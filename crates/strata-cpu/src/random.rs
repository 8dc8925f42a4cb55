//! Counter-based random bits: Threefry-2x32 (20 rounds), laid out exactly as MLX's
//! `RandomBits` (itself JAX's scheme), so a key gives the same bits in Strata and MLX.

use strata_core::Result;
use strata_core::kernel::validate_random_bits;

use crate::{TensorMut, TensorRef};

/// Threefry-2x32 of `count` under `key`.
pub fn threefry2x32(key: [u32; 2], count: [u32; 2]) -> [u32; 2] {
    const ROT: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
    let ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD1_1BDA];
    let (mut x, mut y) = (count[0].wrapping_add(ks[0]), count[1].wrapping_add(ks[1]));
    for i in 0..5 {
        for r in ROT[i % 2] {
            x = x.wrapping_add(y);
            y = y.rotate_left(r) ^ x;
        }
        x = x.wrapping_add(ks[(i + 1) % 3]);
        y = y.wrapping_add(ks[(i + 2) % 3]).wrapping_add(i as u32 + 1);
    }
    [x, y]
}

/// Fills `out` (`[K, N]` uint32, contiguous) with `N` words per key of `keys` (`[K, 2]`
/// uint32): word `j < N/2` and word `j + ⌈N/2⌉` are the two halves of the hash of
/// `(j, j + ⌈N/2⌉)`; an odd `N` takes its middle word from the hash of `(N/2, 0)`.
pub fn random_bits(keys: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    validate_random_bits(&keys, &out)?;
    let os = out.layout.shape();
    let key_words = crate::strided::gather(keys.buffer.typed::<u32>(), keys.layout, |v| v);
    let n = os[1];
    let offset = out.layout.offset();
    let o = &mut out.buffer.typed_mut::<u32>()[offset..offset + os[0] * n];
    let (half, odd) = (n / 2, n % 2);
    for (k, row) in o.chunks_mut(n.max(1)).enumerate().take(os[0]) {
        let key = [key_words[2 * k], key_words[2 * k + 1]];
        for j in 0..half {
            let [a, b] = threefry2x32(key, [j as u32, (j + half + odd) as u32]);
            row[j] = a;
            row[j + half + odd] = b;
        }
        if odd == 1 {
            row[half] = threefry2x32(key, [half as u32, 0])[0];
        }
    }
    Ok(())
}
