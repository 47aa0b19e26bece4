//! From a decoded image to the run's input: channel conversion (gray ↔ RGB), fit to
//! `size × size` (resize or pad), then per batch the train-time jitter (random crop with
//! zero padding, horizontal flip) and normalization, written straight into the batch
//! tensor's CHW memory.

use std::mem::MaybeUninit;

use ablate_common::spec::Fit;
use fast_image_resize as fr;

use super::decode::View;

/// Brings images to `size × size × channels` u8 (HWC): the form the cache holds.
#[derive(Debug)]
pub(crate) struct Preparer {
    size: usize,
    channels: usize,
    fit: Fit,
    resizer: fr::Resizer,
    options: fr::ResizeOptions,
    scratch: Vec<u8>,
}

impl Preparer {
    pub(crate) fn new(size: usize, channels: usize, fit: Fit) -> Preparer {
        Preparer {
            size,
            channels,
            fit,
            resizer: fr::Resizer::new(),
            // Bilinear with a support that widens when downscaling: PIL's (and so
            // torchvision's) antialiased bilinear resize.
            options: fr::ResizeOptions::new()
                .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear)),
            scratch: Vec::new(),
        }
    }

    /// Converts and fits `src` into `out` (`sample_bytes()` long).
    pub(crate) fn prepare(&mut self, src: View<'_>, out: &mut [u8]) -> Result<(), String> {
        let Preparer {
            size,
            channels,
            fit,
            resizer,
            options,
            scratch,
        } = self;
        let (size, channels, fit) = (*size, *channels, *fit);
        match (src.channels, channels) {
            (a, b) if a == b => fit_into(resizer, options, fit, size, src, out),
            (3, 1) => {
                // Gray first: a third of the pixels to resize.
                scratch.resize(src.width * src.height, 0);
                rgb_to_gray(src.data, scratch);
                let gray = View {
                    channels: 1,
                    data: scratch,
                    ..src
                };
                fit_into(resizer, options, fit, size, gray, out)
            }
            (1, 3) => {
                // Fit first, then replicate: a third of the pixels to resize.
                scratch.resize(size * size, 0);
                fit_into(resizer, options, fit, size, src, scratch)?;
                for (px, &g) in out.chunks_exact_mut(3).zip(scratch.iter()) {
                    px.fill(g);
                }
                Ok(())
            }
            (a, b) => Err(format!("cannot convert {a} channels to {b}")),
        }
    }
}

/// ITU-R 601-2 luma, PIL's `convert("L")`: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
pub(crate) fn rgb_to_gray(rgb: &[u8], gray: &mut [u8]) {
    for (g, px) in gray.iter_mut().zip(rgb.chunks_exact(3)) {
        let l = 19595 * px[0] as u32 + 38470 * px[1] as u32 + 7471 * px[2] as u32 + 0x8000;
        *g = (l >> 16) as u8;
    }
}

/// One axis of a centred pad/crop: (offset in the source, offset in the output, length).
fn centre(src: usize, size: usize) -> (usize, usize, usize) {
    if src >= size {
        ((src - size) / 2, 0, size)
    } else {
        (0, (size - src) / 2, src)
    }
}

fn fit_into(
    resizer: &mut fr::Resizer,
    options: &fr::ResizeOptions,
    fit: Fit,
    size: usize,
    src: View<'_>,
    out: &mut [u8],
) -> Result<(), String> {
    let c = src.channels;
    let out = &mut out[..size * size * c];
    if src.width == size && src.height == size {
        out.copy_from_slice(&src.data[..size * size * c]);
        return Ok(());
    }
    match fit {
        Fit::Resize => {
            let pixel = if c == 1 {
                fr::PixelType::U8
            } else {
                fr::PixelType::U8x3
            };
            let from =
                fr::images::ImageRef::new(src.width as u32, src.height as u32, src.data, pixel)
                    .map_err(|e| format!("resize source: {e}"))?;
            let mut to = fr::images::Image::from_slice_u8(size as u32, size as u32, out, pixel)
                .map_err(|e| format!("resize target: {e}"))?;
            resizer
                .resize(&from, &mut to, options)
                .map_err(|e| format!("resize: {e}"))
        }
        Fit::Pad => {
            out.fill(0);
            let (sy, dy, h) = centre(src.height, size);
            let (sx, dx, w) = centre(src.width, size);
            for row in 0..h {
                let from = ((sy + row) * src.width + sx) * c;
                let to = ((dy + row) * size + dx) * c;
                out[to..to + w * c].copy_from_slice(&src.data[from..from + w * c]);
            }
            Ok(())
        }
    }
}

/// A sample's train-time jitter: a crop at (`top`, `left`) of the image zero-padded by
/// `pad` on each side, then an optional horizontal flip (torchvision's
/// `RandomCrop(size, padding=pad)` then `RandomHorizontalFlip()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Jitter {
    pub(crate) pad: usize,
    pub(crate) top: usize,
    pub(crate) left: usize,
    pub(crate) flip: bool,
}

impl Jitter {
    fn is_identity(&self) -> bool {
        self.top == self.pad && self.left == self.pad && !self.flip
    }
}

/// Writes a prepared image (HWC u8, `size × size × luts.len()`) into `out` (CHW f32),
/// jittered, each value through its channel's normalization table.
pub(crate) fn write_normalized(
    prepared: &[u8],
    size: usize,
    luts: &[[f32; 256]],
    jitter: Jitter,
    out: &mut [MaybeUninit<f32>],
) {
    let c = luts.len();
    let plane = size * size;
    if jitter.is_identity() {
        if c == 1 {
            let lut = &luts[0];
            for (o, &v) in out[..plane].iter_mut().zip(&prepared[..plane]) {
                o.write(lut[v as usize]);
            }
        } else {
            let (r, rest) = out[..3 * plane].split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, px) in prepared[..3 * plane].chunks_exact(3).enumerate() {
                r[i].write(luts[0][px[0] as usize]);
                g[i].write(luts[1][px[1] as usize]);
                b[i].write(luts[2][px[2] as usize]);
            }
        }
        return;
    }
    let shift_y = jitter.top as isize - jitter.pad as isize;
    let shift_x = jitter.left as isize - jitter.pad as isize;
    for (ch, lut) in luts.iter().enumerate() {
        let zero = lut[0];
        for y in 0..size {
            let row = &mut out[ch * plane + y * size..ch * plane + (y + 1) * size];
            let sy = y as isize + shift_y;
            if sy < 0 || sy >= size as isize {
                row.iter_mut().for_each(|o| {
                    o.write(zero);
                });
                continue;
            }
            let src = &prepared[sy as usize * size * c..(sy as usize + 1) * size * c];
            for (x, o) in row.iter_mut().enumerate() {
                let xx = if jitter.flip { size - 1 - x } else { x };
                let sx = xx as isize + shift_x;
                let v = if sx < 0 || sx >= size as isize {
                    zero
                } else {
                    lut[src[sx as usize * c + ch] as usize]
                };
                o.write(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_lut() -> [f32; 256] {
        std::array::from_fn(|v| v as f32)
    }

    fn run(prepared: &[u8], size: usize, c: usize, jitter: Jitter) -> Vec<f32> {
        let luts = vec![identity_lut(); c];
        let mut out = vec![MaybeUninit::uninit(); size * size * c];
        write_normalized(prepared, size, &luts, jitter, &mut out);
        out.into_iter()
            // SAFETY: `write_normalized` writes every element of `out`.
            .map(|v| unsafe { v.assume_init() })
            .collect()
    }

    #[test]
    fn identity_writes_chw() {
        // 2×2 RGB, HWC: pixel p has channels (10p, 10p+1, 10p+2).
        let hwc: Vec<u8> = (0..4)
            .flat_map(|p| [10 * p, 10 * p + 1, 10 * p + 2])
            .collect();
        let chw = run(&hwc, 2, 3, Jitter::default());
        assert_eq!(
            chw,
            vec![0., 10., 20., 30., 1., 11., 21., 31., 2., 12., 22., 32.]
        );
    }

    #[test]
    fn crop_and_flip_follow_torchvision() {
        // 3×3 gray 1..9; pad 1; crop at (0, 2) = shift up-left by -1 rows, +1 cols.
        let img: Vec<u8> = (1..=9).collect();
        let j = Jitter {
            pad: 1,
            top: 0,
            left: 2,
            flip: false,
        };
        assert_eq!(run(&img, 3, 1, j), vec![0., 0., 0., 2., 3., 0., 5., 6., 0.]);
        let flipped = Jitter {
            flip: true,
            ..Jitter {
                pad: 1,
                top: 1,
                left: 1,
                flip: false,
            }
        };
        assert_eq!(
            run(&img, 3, 1, flipped),
            vec![3., 2., 1., 6., 5., 4., 9., 8., 7.]
        );
    }

    #[test]
    fn pad_centres_and_crop_centres() {
        let mut p = Preparer::new(4, 1, Fit::Pad);
        let src = [1u8, 2, 3, 4];
        let mut out = vec![9u8; 16];
        p.prepare(
            View {
                width: 2,
                height: 2,
                channels: 1,
                data: &src,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0]);
        let mut small = Preparer::new(2, 1, Fit::Pad);
        let big: Vec<u8> = (0..16).collect();
        let mut out = vec![0u8; 4];
        small
            .prepare(
                View {
                    width: 4,
                    height: 4,
                    channels: 1,
                    data: &big,
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(out, vec![5, 6, 9, 10]);
    }

    #[test]
    fn channels_convert_both_ways() {
        let mut to_gray = Preparer::new(1, 1, Fit::Resize);
        let mut out = [0u8; 1];
        to_gray
            .prepare(
                View {
                    width: 1,
                    height: 1,
                    channels: 3,
                    data: &[255, 0, 0],
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(out, [76]); // PIL: Image.new("RGB", (1, 1), (255, 0, 0)).convert("L") → 76
        let mut to_rgb = Preparer::new(1, 3, Fit::Resize);
        let mut out = [0u8; 3];
        to_rgb
            .prepare(
                View {
                    width: 1,
                    height: 1,
                    channels: 1,
                    data: &[7],
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(out, [7, 7, 7]);
    }

    #[test]
    fn resize_of_a_flat_image_stays_flat() {
        let mut p = Preparer::new(5, 3, Fit::Resize);
        let src = vec![200u8; 9 * 7 * 3];
        let mut out = vec![0u8; 75];
        p.prepare(
            View {
                width: 9,
                height: 7,
                channels: 3,
                data: &src,
            },
            &mut out,
        )
        .unwrap();
        assert!(out.iter().all(|&v| v == 200), "{out:?}");
    }

    /// PIL's antialiased bilinear, the reference torchvision uses:
    /// ```python
    /// src = np.array([[(x*37 + y*11 + (x*y)%13) % 256 for x in range(9)] for y in range(7)], np.uint8)
    /// np.asarray(Image.fromarray(src).resize((5, 5), Image.BILINEAR))          # down
    /// np.asarray(Image.fromarray(src[:3, :3]).resize((4, 4), Image.BILINEAR))  # up
    /// ```
    #[test]
    fn resize_matches_pil_bilinear() {
        let src: Vec<u8> = (0..7)
            .flat_map(|y| (0..9).map(move |x| ((x * 37 + y * 11 + (x * y) % 13) % 256) as u8))
            .collect();
        let pil_down = [
            25, 83, 153, 175, 43, 39, 99, 171, 123, 49, 56, 118, 189, 80, 59, 72, 135, 203, 98, 73,
            87, 149, 218, 111, 87,
        ];
        let mut p = Preparer::new(5, 1, Fit::Resize);
        let mut out = vec![0u8; 25];
        p.prepare(
            View {
                width: 9,
                height: 7,
                channels: 1,
                data: &src,
            },
            &mut out,
        )
        .unwrap();
        for (a, b) in out.iter().zip(pil_down) {
            assert!(
                (*a as i32 - b).abs() <= 1,
                "ours {out:?}\nPIL  {pil_down:?}"
            );
        }
        let corner = [0u8, 37, 74, 11, 49, 87, 22, 61, 100];
        let pil_up = [
            0, 23, 51, 74, 7, 31, 59, 82, 15, 39, 68, 92, 22, 46, 76, 100,
        ];
        let mut p = Preparer::new(4, 1, Fit::Resize);
        let mut out = vec![0u8; 16];
        p.prepare(
            View {
                width: 3,
                height: 3,
                channels: 1,
                data: &corner,
            },
            &mut out,
        )
        .unwrap();
        for (a, b) in out.iter().zip(pil_up) {
            assert!((*a as i32 - b).abs() <= 1, "ours {out:?}\nPIL  {pil_up:?}");
        }
    }
}
