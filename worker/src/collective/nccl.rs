//! NCCL all-reduce for replicas on the CUDA devices of one worker (feature `cuda`).
//!
//! The communicators come from `ncclCommInitAll` (one process, one thread per device).
//! Each call enqueues `ncclAllReduce` in place on the tensor's device pointer, on the
//! device's default stream (the one libtorch uses), then polls the stream until it is done
//! or the timeout passes; on timeout, an asynchronous NCCL error or a group abort the rank
//! aborts its own communicator, so a dead or stuck peer fails the run instead of hanging it.
//!
//! Every communicator is freed exactly once: `ncclCommAbort` and `ncclCommDestroy` both
//! free it (NCCL ≥ 2.14), so a rank's slot is emptied when its thread aborts it, and `Drop`
//! frees what is left (abort after a failure, destroy after a clean run). Only a rank's own
//! thread aborts its communicator: [`Collective::abort`] from another thread only flags the
//! group, since freeing a communicator another thread is using would be a use-after-free.
//!
//! cudarc loads libcuda and libnccl at run time and panics when either is missing, so
//! [`NcclCollective::new`] checks the library and the symbols this module calls first, and
//! nothing here runs unless libtorch found CUDA devices (libcuda is then loaded).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cudarc::driver::sys::CUresult;
use cudarc::nccl::sys::{self as nccl, ncclComm_t, ncclDataType_t, ncclRedOp_t, ncclResult_t};
use tch::{Device, Kind, Tensor};

use super::{Collective, CollectiveError};

/// The NCCL functions this module calls (cudarc resolves each on first use, panicking
/// when it is missing; [`check_library`] asks for them first).
pub const NCCL_SYMBOLS: [&str; 6] = [
    "ncclGetVersion",
    "ncclCommInitAll",
    "ncclAllReduce",
    "ncclCommGetAsyncError",
    "ncclCommAbort",
    "ncclCommDestroy",
];

/// The oldest NCCL whose API the cudarc feature in Cargo.toml (`nccl-02028`) describes.
pub const NCCL_MIN_VERSION: i32 = 22800;

/// One NCCL communicator per replica (device).
#[derive(Debug)]
pub struct NcclCollective {
    /// `None` once the rank's communicator was aborted (freed).
    comms: Vec<Mutex<Option<Comm>>>,
    ordinals: Vec<usize>,
    timeout: Duration,
    aborted: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
struct Comm(ncclComm_t);

// SAFETY: a communicator is used by exactly one replica thread (its rank's), and freed by
// that thread or by `Drop` after every replica stopped.
unsafe impl Send for Comm {}

fn check(result: ncclResult_t, what: &str) -> Result<(), CollectiveError> {
    if result == ncclResult_t::ncclSuccess {
        Ok(())
    } else {
        Err(CollectiveError::Backend(format!(
            "{what}: NCCL error {result:?}"
        )))
    }
}

/// Checks that libnccl loads, exports every function this module calls, and is recent
/// enough; returns its version code (e.g. 22809 for 2.28.9). An error, never a panic.
pub fn check_library() -> Result<i32, CollectiveError> {
    // SAFETY: only tries to open the library under cudarc's candidate names.
    if !unsafe { nccl::is_culib_present() } {
        return Err(CollectiveError::Backend(
            "NCCL not found: cudarc opens `libnccl.so` (not the torch wheel's `libnccl.so.2`); \
             deploy/setup.sh links it in the wheel's nvidia/nccl/lib, which must be on the \
             worker's RUNPATH or LD_LIBRARY_PATH"
                .into(),
        ));
    }
    // SAFETY: the library is present (checked above), so `culib` does not panic.
    let lib = unsafe { nccl::culib() };
    for name in NCCL_SYMBOLS {
        // SAFETY: looks the symbol up without calling it.
        if let Err(e) = unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) } {
            return Err(CollectiveError::Backend(format!(
                "the NCCL library lacks {name}: {e}"
            )));
        }
    }
    let mut version = 0;
    // SAFETY: writes one int.
    check(
        unsafe { nccl::ncclGetVersion(&mut version) },
        "ncclGetVersion",
    )?;
    if version < NCCL_MIN_VERSION {
        return Err(CollectiveError::Backend(format!(
            "NCCL {version} is older than {NCCL_MIN_VERSION}, the API this build was compiled for"
        )));
    }
    Ok(version)
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
        check_library()?;
        let list: Vec<i32> = ordinals.iter().map(|&i| i as i32).collect();
        let mut comms: Vec<ncclComm_t> = vec![std::ptr::null_mut(); list.len()];
        // SAFETY: `comms` has room for one communicator per listed device.
        let result =
            unsafe { nccl::ncclCommInitAll(comms.as_mut_ptr(), list.len() as i32, list.as_ptr()) };
        check(result, "ncclCommInitAll")?;
        Ok(NcclCollective {
            comms: comms
                .into_iter()
                .map(|c| Mutex::new(Some(Comm(c))))
                .collect(),
            ordinals,
            timeout,
            aborted: Mutex::new(None),
        })
    }

    fn abort_reason(&self) -> Option<String> {
        self.aborted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The rank's live communicator.
    fn comm(&self, rank: usize) -> Result<ncclComm_t, CollectiveError> {
        let slot = self.comms[rank].lock().unwrap_or_else(|p| p.into_inner());
        slot.map(|c| c.0).ok_or_else(|| {
            CollectiveError::Aborted(
                self.abort_reason()
                    .unwrap_or_else(|| "the communicator was aborted".into()),
            )
        })
    }

    /// Aborts (and so frees) the rank's own communicator, once; called by its thread.
    fn abort_own(&self, rank: usize) {
        let taken = self.comms[rank]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(comm) = taken {
            // SAFETY: the communicator is live and no other thread uses it.
            unsafe { nccl::ncclCommAbort(comm.0) };
        }
    }

    /// Fails the rank: aborts its communicator and flags the group for the others.
    fn fail(&self, rank: usize, error: CollectiveError) -> CollectiveError {
        self.abort(&format!("rank {rank}: {error}"));
        self.abort_own(rank);
        error
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

    fn wait(&self, rank: usize, comm: ncclComm_t) -> Result<(), CollectiveError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            // SAFETY: the null stream is the current device's legacy default stream.
            let status = unsafe { cudarc::driver::sys::cuStreamQuery(std::ptr::null_mut()) };
            match status {
                CUresult::CUDA_SUCCESS => return Ok(()),
                CUresult::CUDA_ERROR_NOT_READY => {}
                other => {
                    let e = CollectiveError::Backend(format!("CUDA stream: {other:?}"));
                    return Err(self.fail(rank, e));
                }
            }
            let mut async_error = ncclResult_t::ncclSuccess;
            // SAFETY: `comm` is live: only this thread frees it, and it has not.
            unsafe { nccl::ncclCommGetAsyncError(comm, &mut async_error) };
            if async_error != ncclResult_t::ncclSuccess {
                let e = CollectiveError::Backend(format!("NCCL: {async_error:?}"));
                return Err(self.fail(rank, e));
            }
            if let Some(reason) = self.abort_reason() {
                self.abort_own(rank);
                return Err(CollectiveError::Aborted(reason));
            }
            if Instant::now() > deadline {
                return Err(self.fail(rank, CollectiveError::Timeout(self.timeout)));
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
        if let Some(reason) = self.abort_reason() {
            self.abort_own(rank);
            return Err(CollectiveError::Aborted(reason));
        }
        let comm = self.comm(rank)?;
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
            Kind::BFloat16 => ncclDataType_t::ncclBfloat16,
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
        // stays alive (owned by `work`) until `wait` returns; `comm` is live.
        let result = unsafe {
            nccl::ncclAllReduce(
                ptr,
                ptr,
                work.numel(),
                dtype,
                ncclRedOp_t::ncclSum,
                comm,
                std::ptr::null_mut(),
            )
        };
        if let Err(e) = check(result, "ncclAllReduce") {
            return Err(self.fail(rank, e));
        }
        self.wait(rank, comm)?;
        if on_host || work.data_ptr() != tensor.data_ptr() {
            tensor.copy_(&work);
        }
        Ok(())
    }

    fn abort(&self, reason: &str) {
        self.aborted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| reason.to_string());
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        let failed = self.abort_reason().is_some();
        for slot in &self.comms {
            let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(comm) = taken {
                // SAFETY: every replica stopped; each live communicator is freed once. A
                // failed group is aborted (destroy would wait for peers that may be gone).
                unsafe {
                    if failed {
                        nccl::ncclCommAbort(comm.0);
                    } else {
                        nccl::ncclCommDestroy(comm.0);
                    }
                }
            }
        }
    }
}

/// What [`self_check`] saw, one line per stage.
#[derive(Debug, Clone)]
pub struct SelfCheck {
    /// `(stage, result)` in order.
    pub stages: Vec<(String, String)>,
}

/// The NCCL path with a world of one on `device`, every stage one GPU can exercise:
/// library and symbols, init, an all-reduce (checked against its input), a forced abort
/// (the next call must fail, and nothing is freed twice), and init, all-reduce and destroy
/// of a second group.
pub fn self_check(device: Device) -> Result<SelfCheck, CollectiveError> {
    let mut stages = Vec::new();
    let version = check_library()?;
    stages.push((
        "library".into(),
        format!(
            "NCCL {}.{}.{} exports {}",
            version / 10000,
            version / 100 % 100,
            version % 100,
            NCCL_SYMBOLS.join(" ")
        ),
    ));
    let input = [1.0f32, -2.5, 3.0, 1e-3];
    let reduce = |group: &NcclCollective| -> Result<(), CollectiveError> {
        let mut t = Tensor::from_slice(&input).to_device(device);
        group.all_reduce_sum(0, &mut t)?;
        let out = Vec::<f32>::try_from(&t.to_device(Device::Cpu))
            .map_err(|e| CollectiveError::Backend(e.to_string()))?;
        if out != input {
            return Err(CollectiveError::Backend(format!(
                "all-reduce of one rank changed {input:?} into {out:?}"
            )));
        }
        Ok(())
    };
    let timeout = Duration::from_secs(60);
    let group = NcclCollective::new(&[device], timeout)?;
    stages.push(("init".into(), format!("ncclCommInitAll on {device:?}")));
    reduce(&group)?;
    stages.push((
        "all-reduce".into(),
        format!("{} floats, sum ok", input.len()),
    ));
    group.abort("forced by the self-check");
    match reduce(&group) {
        Err(CollectiveError::Aborted(_)) if group.comm(0).is_err() => {}
        other => {
            return Err(CollectiveError::Backend(format!(
                "after a forced abort the next all-reduce returned {other:?}"
            )))
        }
    }
    drop(group);
    stages.push((
        "abort".into(),
        "ncclCommAbort; next call refused; not destroyed again".into(),
    ));
    let group = NcclCollective::new(&[device], timeout)?;
    reduce(&group)?;
    drop(group);
    stages.push((
        "destroy".into(),
        "a second group: init, all-reduce, ncclCommDestroy".into(),
    ));
    Ok(SelfCheck { stages })
}
