//! The error type of `strata-core`: every variant names the operation and the values that
//! were wrong, so a message can be acted on without a debugger.

/// Errors from `strata-core`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A type name that is not a [`DType`](crate::DType).
    #[error("unknown dtype `{name}` (known: {known})")]
    UnknownDType {
        /// The name given.
        name: String,
        /// The names that would have parsed.
        known: String,
    },

    /// A quantization mode string that does not parse.
    #[error("unknown quantization mode `{name}` (known: {known})")]
    UnknownQuantMode {
        /// The name given.
        name: String,
        /// The forms that would have parsed.
        known: String,
    },

    /// An operation that does not accept this element type.
    #[error("{op}: {dtype} is not supported (expected {expected})")]
    UnsupportedDType {
        /// The operation.
        op: &'static str,
        /// The type given.
        dtype: crate::DType,
        /// The types it accepts.
        expected: &'static str,
    },

    /// A buffer whose length does not match the shape it is said to have.
    #[error("{op}: {what} has {got} elements but shape {shape:?} needs {expected}")]
    LengthMismatch {
        /// The operation.
        op: &'static str,
        /// Which operand.
        what: &'static str,
        /// The shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        got: usize,
    },

    /// A last axis that does not split into whole blocks.
    #[error(
        "{op}: the last axis of shape {shape:?} has {len} elements, not a multiple of the {block}-element blocks of {mode}"
    )]
    BlockMismatch {
        /// The operation.
        op: &'static str,
        /// The quantization mode.
        mode: String,
        /// The shape given.
        shape: Vec<usize>,
        /// Length of the last axis.
        len: usize,
        /// The block (group) size.
        block: usize,
    },

    /// An allocation that did not succeed.
    #[error("out of memory on {device}: could not allocate {bytes} bytes")]
    OutOfMemory {
        /// The device (`cpu`, `cuda:0`, …).
        device: String,
        /// The size asked for.
        bytes: usize,
    },

    /// An operation this backend has no kernel for yet. The array layer may run it on the CPU
    /// instead, explicitly (see `strata`'s device docs); a kernel-layer caller gets this `Err`.
    #[error("{op} is not implemented yet on {backend}")]
    NotImplemented {
        /// The operation.
        op: &'static str,
        /// The backend ([`Backend::name`](crate::kernel::Backend::name)).
        backend: String,
    },

    /// Any other invalid argument.
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
