//! A custom CUDA kernel run through MLX (`mlx_fast_cuda_kernel_*` of mlx-c): MLX compiles the
//! source with NVRTC on first use, caches the module, and records the launch as ONE node of its
//! CUDA graph, scheduled and kept alive like any other operation. Only valid on the GPU device
//! of MLX's CUDA backend; callers check `services::runtime_info::device() == "cuda"` first.

use std::ffi::{CStr, CString};

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype, StreamOrDevice};

type MlxResult<T> = Result<T, Exception>;

/// A kernel (its source and argument names), created once and applied many times.
pub(crate) struct CudaKernel {
    raw: mlx_sys::mlx_fast_cuda_kernel,
    name: String,
}

/// One launch: output shapes/dtypes, grid (in threads, as MLX counts it) and block size,
/// compile-time template arguments.
pub(crate) struct Launch<'a> {
    pub outputs: &'a [(&'a [i32], Dtype)],
    pub grid: (i32, i32, i32),
    pub block: (i32, i32, i32),
    /// Template arguments by name (C string literals: no allocation per launch).
    pub dtypes: &'a [(&'a CStr, Dtype)],
    pub ints: &'a [(&'a CStr, i32)],
    pub bools: &'a [(&'a CStr, bool)],
}

fn strings(names: &[&str]) -> mlx_sys::mlx_vector_string {
    unsafe {
        let v = mlx_sys::mlx_vector_string_new();
        for n in names {
            let c = CString::new(*n).expect("kernel argument names have no NUL");
            mlx_sys::mlx_vector_string_append_value(v, c.as_ptr());
        }
        v
    }
}

fn check(status: i32, what: &str, name: &str) -> MlxResult<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Exception::custom(format!("custom CUDA kernel '{name}': {what} failed")))
    }
}

impl CudaKernel {
    /// `source` is the kernel body; MLX writes the signature from the argument names (inputs
    /// as `const T* name`, outputs as `T* name`) and prepends `header`. Inputs that are not
    /// row-contiguous are copied first.
    pub(crate) fn new(name: &str, inputs: &[&str], outputs: &[&str], source: &str, header: &str) -> Self {
        Self::with_layout(name, inputs, outputs, source, header, true)
    }

    /// As `new`; with `row_contiguous` false the inputs are passed as they are (views keep their
    /// offset and strides, which the source reads as `name_strides`).
    pub(crate) fn with_layout(name: &str, inputs: &[&str], outputs: &[&str], source: &str, header: &str, row_contiguous: bool) -> Self {
        let (cname, csrc, chdr) = (CString::new(name).unwrap(), CString::new(source).unwrap(), CString::new(header).unwrap());
        let (ins, outs) = (strings(inputs), strings(outputs));
        let raw = unsafe {
            let k = mlx_sys::mlx_fast_cuda_kernel_new(cname.as_ptr(), ins, outs, csrc.as_ptr(), chdr.as_ptr(), row_contiguous, 0);
            mlx_sys::mlx_vector_string_free(ins);
            mlx_sys::mlx_vector_string_free(outs);
            k
        };
        CudaKernel { raw, name: name.to_string() }
    }

    pub(crate) fn apply(&self, inputs: &[&Array], launch: &Launch<'_>) -> MlxResult<Vec<Array>> {
        // mlx-rs installs its error handler on first use of any op; make sure it is there so a
        // failure below is reported instead of aborting the process.
        static HANDLER: std::sync::Once = std::sync::Once::new();
        HANDLER.call_once(|| drop(Array::from_int(0)));
        let name = &self.name;
        unsafe {
            let cfg = mlx_sys::mlx_fast_cuda_kernel_config_new();
            let result = (|| {
                for (shape, dtype) in launch.outputs {
                    check(mlx_sys::mlx_fast_cuda_kernel_config_add_output_arg(cfg, shape.as_ptr(), shape.len(), (*dtype).into()), "output", name)?;
                }
                let (g, b) = (launch.grid, launch.block);
                check(mlx_sys::mlx_fast_cuda_kernel_config_set_grid(cfg, g.0, g.1, g.2), "grid", name)?;
                check(mlx_sys::mlx_fast_cuda_kernel_config_set_thread_group(cfg, b.0, b.1, b.2), "block", name)?;
                for (n, d) in launch.dtypes {
                    check(mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_dtype(cfg, n.as_ptr(), (*d).into()), "template", name)?;
                }
                for (n, v) in launch.ints {
                    check(mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_int(cfg, n.as_ptr(), *v), "template", name)?;
                }
                for (n, v) in launch.bools {
                    check(mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_bool(cfg, n.as_ptr(), *v), "template", name)?;
                }
                let raw_inputs: Vec<mlx_sys::mlx_array> = inputs.iter().map(|a| a.as_ptr()).collect();
                let ins = mlx_sys::mlx_vector_array_new_data(raw_inputs.as_ptr(), raw_inputs.len());
                let mut outs = mlx_sys::mlx_vector_array_new();
                let stream = StreamOrDevice::default();
                let status = mlx_sys::mlx_fast_cuda_kernel_apply(&mut outs, self.raw, ins, cfg, stream.as_ref().as_ptr());
                mlx_sys::mlx_vector_array_free(ins);
                let checked = check(status, "apply", name);
                let mut arrays = Vec::new();
                if checked.is_ok() {
                    for i in 0..mlx_sys::mlx_vector_array_size(outs) {
                        let mut a = mlx_sys::mlx_array_new();
                        mlx_sys::mlx_vector_array_get(&mut a, outs, i);
                        arrays.push(Array::from_ptr(a));
                    }
                }
                mlx_sys::mlx_vector_array_free(outs);
                checked.map(|_| arrays)
            })();
            mlx_sys::mlx_fast_cuda_kernel_config_free(cfg);
            result
        }
    }
}

impl Drop for CudaKernel {
    fn drop(&mut self) {
        unsafe { mlx_sys::mlx_fast_cuda_kernel_free(self.raw) };
    }
}
