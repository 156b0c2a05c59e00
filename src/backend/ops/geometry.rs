//! Output sizes and padding of windowed ops (conv, pool), exactly as Keras computes them.

/// How a windowed op treats the border, as Keras's `padding` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: `out = floor((in - k) / s) + 1`.
    Valid,
    /// Keras `same`: `out = ceil(in / s)`, total padding `max((out - 1) * s + k - in, 0)` of
    /// which `total / 2` goes before and the rest after (even kernels at stride 1: 0 then 1).
    Same,
}

/// The placement of a window along one spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis1 {
    /// Input size.
    pub input: usize,
    /// Window (kernel or pool) size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Output size.
    pub output: usize,
    /// Padding before the first element.
    pub pad_before: usize,
}

impl Axis1 {
    /// Places a window of `kernel` with `stride` on an axis of `input` elements.
    ///
    /// Returns `None` when the output would be empty (a kernel larger than a valid input) or
    /// the kernel or stride is 0; the compiler reports those before the backend runs.
    pub fn new(input: usize, kernel: usize, stride: usize, padding: Padding) -> Option<Self> {
        if kernel == 0 || stride == 0 || input == 0 {
            return None;
        }
        let (output, pad_before) = match padding {
            Padding::Valid => {
                if kernel > input {
                    return None;
                }
                ((input - kernel) / stride + 1, 0)
            }
            Padding::Same => {
                let output = input.div_ceil(stride);
                let total = ((output - 1) * stride + kernel).saturating_sub(input);
                (output, total / 2)
            }
        };
        Some(Self {
            input,
            kernel,
            stride,
            output,
            pad_before,
        })
    }

    /// The input index of window element `k` of output `o`, or `None` when it is padding.
    #[inline]
    pub fn source(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.pad_before)
            .filter(|&i| i < self.input)
    }

    /// The range of window elements of output `o` that fall inside the input.
    #[inline]
    pub fn valid_taps(&self, o: usize) -> std::ops::Range<usize> {
        let start = o * self.stride;
        let first = self.pad_before.saturating_sub(start);
        let last = (self.input + self.pad_before)
            .saturating_sub(start)
            .min(self.kernel);
        first..last.max(first)
    }
}

/// The placement of a 2-D window on an image: one [`Axis1`] per spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window2 {
    /// Rows.
    pub rows: Axis1,
    /// Columns.
    pub cols: Axis1,
}

impl Window2 {
    /// Places a `kernel` (rows, cols) window with `stride` (rows, cols) on an `input` image.
    pub fn new(
        input: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Option<Self> {
        Some(Self {
            rows: Axis1::new(input.0, kernel.0, stride.0, padding)?,
            cols: Axis1::new(input.1, kernel.1, stride.1, padding)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_keras() {
        let even = Axis1::new(224, 2, 1, Padding::Same).expect("valid axis");
        assert_eq!((even.output, even.pad_before), (224, 0));
        let odd = Axis1::new(5, 3, 2, Padding::Same).expect("valid axis");
        assert_eq!((odd.output, odd.pad_before), (3, 1));
        let pool = Axis1::new(7, 2, 2, Padding::Same).expect("valid axis");
        assert_eq!((pool.output, pool.pad_before), (4, 0));
        assert_eq!(pool.valid_taps(3), 0..1);
        let valid = Axis1::new(223, 16, 16, Padding::Valid).expect("valid axis");
        assert_eq!(valid.output, 13);
        assert!(Axis1::new(3, 4, 1, Padding::Valid).is_none());
    }
}
