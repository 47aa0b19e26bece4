//! NCCL all-reduce for replicas on the CUDA devices of one worker (feature `cuda`).
//!
//! The communicators come from `ncclCommInitAll` (one process, one thread per device).
//! Each call enqueues `ncclAllReduce` in place on the tensor's device pointer, on the
//! device's default stream (the one libtorch uses), then polls the stream until it is done
//! or the timeout passes; on timeout or an asynchronous NCCL error the communicator is
//! aborted, so a dead or stuck peer fails the run instead of hanging it.
//!
//! cudarc loads libcuda and libnccl at run time; nothing here runs unless the trainer found
//! CUDA devices through libtorch first (cudarc panics when libcuda is absent).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cudarc::driver::sys::CUresult;
use cudarc::nccl::sys::{self as nccl, ncclComm_t, ncclDataType_t, ncclRedOp_t, ncclResult_t};
use tch::{Device, Kind, Tensor};

use super::{Collective, CollectiveError};

/// One NCCL communicator per replica (device).
#[derive(Debug)]
pub struct NcclCollective {
    comms: Vec<Comm>,
    ordinals: Vec<usize>,
    timeout: Duration,
    aborted: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Comm(ncclComm_t);

// SAFETY: a communicator is used by exactly one replica thread at a time (its rank's), and
// abort is thread-safe in NCCL.
unsafe impl Send for Comm {}
unsafe impl Sync for Comm {}

fn check(result: ncclResult_t, what: &str) -> Result<(), CollectiveError> {
    if result == ncclResult_t::ncclSuccess {
        Ok(())
    } else {
        Err(CollectiveError::Backend(format!(
            "{what}: NCCL error {result:?}"
        )))
    }
}

impl NcclCollective {
    /// Communicators for `devices` (all CUDA), created in one call.
    pub fn new(devices: &[Device], timeout: Duration) -> Result<Self, CollectiveError> {
        let ordinals: Vec<usize> = devices
            .iter()
            .map(|d| match d {
                Device::Cuda(i) => Ok(*i),
                other => Err(CollectiveError::Backend(format!(
                    "NCCL needs CUDA devices, got {other:?}"
                ))),
            })
            .collect::<Result<_, _>>()?;
        let list: Vec<i32> = ordinals.iter().map(|&i| i as i32).collect();
        let mut comms: Vec<ncclComm_t> = vec![std::ptr::null_mut(); list.len()];
        // SAFETY: `comms` has room for one communicator per listed device.
        let result =
            unsafe { nccl::ncclCommInitAll(comms.as_mut_ptr(), list.len() as i32, list.as_ptr()) };
        check(result, "ncclCommInitAll")?;
        Ok(NcclCollective {
            comms: comms.into_iter().map(Comm).collect(),
            ordinals,
            timeout,
            aborted: Mutex::new(None),
        })
    }

    fn make_current(&self, rank: usize) -> Result<(), CollectiveError> {
        let backend =
            |e: cudarc::driver::DriverError| CollectiveError::Backend(format!("CUDA: {e:?}"));
        cudarc::driver::result::init().map_err(backend)?;
        let device =
            cudarc::driver::result::device::get(self.ordinals[rank] as i32).map_err(backend)?;
        // SAFETY: the primary context is the one libtorch uses; retaining it is refcounted.
        unsafe {
            let ctx = cudarc::driver::result::primary_ctx::retain(device).map_err(backend)?;
            cudarc::driver::result::ctx::set_current(ctx).map_err(backend)?;
        }
        Ok(())
    }

    fn wait(&self, rank: usize) -> Result<(), CollectiveError> {
        let deadline = Instant::now() + self.timeout;
        let comm = self.comms[rank].0;
        loop {
            // SAFETY: the null stream is the current device's legacy default stream.
            let status = unsafe { cudarc::driver::sys::cuStreamQuery(std::ptr::null_mut()) };
            match status {
                CUresult::CUDA_SUCCESS => return Ok(()),
                CUresult::CUDA_ERROR_NOT_READY => {}
                other => return Err(CollectiveError::Backend(format!("CUDA stream: {other:?}"))),
            }
            let mut async_error = ncclResult_t::ncclSuccess;
            // SAFETY: `comm` is a live communicator.
            unsafe { nccl::ncclCommGetAsyncError(comm, &mut async_error) };
            if async_error != ncclResult_t::ncclSuccess {
                // SAFETY: aborting a communicator with a failed operation.
                unsafe { nccl::ncclCommAbort(comm) };
                return Err(CollectiveError::Backend(format!("NCCL: {async_error:?}")));
            }
            if let Some(reason) = self.aborted.lock().ok().and_then(|g| g.clone()) {
                // SAFETY: as above.
                unsafe { nccl::ncclCommAbort(comm) };
                return Err(CollectiveError::Aborted(reason));
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { nccl::ncclCommAbort(comm) };
                return Err(CollectiveError::Timeout(self.timeout));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

impl Collective for NcclCollective {
    fn world(&self) -> usize {
        self.comms.len()
    }

    fn all_reduce_sum(&self, rank: usize, tensor: &mut Tensor) -> Result<(), CollectiveError> {
        if let Some(reason) = self.aborted.lock().ok().and_then(|g| g.clone()) {
            return Err(CollectiveError::Aborted(reason));
        }
        let device = Device::Cuda(self.ordinals[rank]);
        // Epoch totals live on the host: reduce a device copy.
        let on_host = tensor.device() != device;
        let mut work = if on_host {
            tensor.to_device(device)
        } else {
            tensor.shallow_clone()
        };
        work = work.contiguous();
        let dtype = match work.kind() {
            Kind::Float => ncclDataType_t::ncclFloat32,
            Kind::Double => ncclDataType_t::ncclFloat64,
            Kind::Half => ncclDataType_t::ncclFloat16,
            Kind::Int64 => ncclDataType_t::ncclInt64,
            other => {
                return Err(CollectiveError::Backend(format!(
                    "NCCL all-reduce of {other:?}"
                )))
            }
        };
        self.make_current(rank)?;
        let ptr = work.data_ptr();
        // SAFETY: in-place all-reduce on a contiguous device buffer of `numel` elements that
        // stays alive (owned by `work`) until `wait` returns.
        let result = unsafe {
            nccl::ncclAllReduce(
                ptr,
                ptr,
                work.numel(),
                dtype,
                ncclRedOp_t::ncclSum,
                self.comms[rank].0,
                std::ptr::null_mut(),
            )
        };
        check(result, "ncclAllReduce")?;
        self.wait(rank)?;
        if on_host || work.data_ptr() != tensor.data_ptr() {
            tensor.copy_(&work);
        }
        Ok(())
    }

    fn abort(&self, reason: &str) {
        if let Ok(mut guard) = self.aborted.lock() {
            guard.get_or_insert_with(|| reason.to_string());
        }
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        for comm in &self.comms {
            // SAFETY: each communicator is destroyed once, after every replica stopped.
            unsafe { nccl::ncclCommDestroy(comm.0) };
        }
    }
}
