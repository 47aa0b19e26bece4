//! Device names, parsed in one place: a device (`cpu`, `cuda:N`) as workers register and
//! the coordinator assigns them, and a run's device list (`cpu`, `cpu:N`, `cuda:0,1`).

use std::fmt;

/// A device name or device list that does not parse, or that names a CUDA device the
/// machine lacks. Each message starts with the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not `cpu` nor `cuda:N`.
    #[error("`{0}` is not a device name (expected `cpu` or `cuda:N`)")]
    NotADevice(String),
    /// `cpu:N` whose N is not an integer.
    #[error("`{0}`: expected cpu:N with N a positive integer")]
    CpuCount(String),
    /// `cpu:0`.
    #[error("`{0}`: at least one CPU replica")]
    NoCpuReplica(String),
    /// `cuda:` followed by something other than integer ordinals.
    #[error("`{0}`: expected cuda:I[,J…] with integer ordinals")]
    CudaOrdinals(String),
    /// One CUDA ordinal listed twice.
    #[error("`{list}`: cuda:{ordinal} is listed twice (one replica per device)")]
    Repeated {
        /// The list as given.
        list: String,
        /// The ordinal listed twice.
        ordinal: usize,
    },
    /// Neither `cpu`, `cpu:N` nor `cuda:…`.
    #[error("`{0}`: expected `cpu`, `cpu:N` or `cuda:I[,J…]`")]
    NotAList(String),
    /// A CUDA device requested on a machine without one.
    #[error("`{list}`: cuda:{ordinal} requested but this machine has no CUDA device")]
    NoCuda {
        /// The list.
        list: DeviceList,
        /// The first ordinal requested.
        ordinal: usize,
    },
    /// A CUDA ordinal past the machine's last device.
    #[error(
        "`{list}`: cuda:{ordinal} requested but this machine has {available} CUDA device(s) \
         (cuda:0 to cuda:{last})",
        last = .available - 1
    )]
    Unavailable {
        /// The list.
        list: DeviceList,
        /// The first ordinal past the last device.
        ordinal: usize,
        /// The machine's CUDA devices (at least one).
        available: usize,
    },
}

/// One device as workers offer it and the coordinator assigns it: `cpu` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl Device {
    /// Parses `cpu` or `cuda:N`.
    pub fn parse(name: &str) -> Result<Device, DeviceError> {
        if name == "cpu" {
            return Ok(Device::Cpu);
        }
        match name.strip_prefix("cuda:").map(parse_ordinal) {
            Some(Ok(ordinal)) => Ok(Device::Cuda(ordinal)),
            _ => Err(DeviceError::NotADevice(name.to_string())),
        }
    }

    /// The CUDA ordinal (`None` for the CPU).
    pub fn cuda_ordinal(self) -> Option<usize> {
        match self {
            Device::Cpu => None,
            Device::Cuda(ordinal) => Some(ordinal),
        }
    }

    /// The CUDA ordinal of a device name; `None` for `cpu` and for what is not a device.
    pub fn ordinal_of(name: &str) -> Option<usize> {
        Device::parse(name).ok()?.cuda_ordinal()
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// A CUDA ordinal: digits only (no sign, no spaces).
fn parse_ordinal(text: &str) -> Result<usize, std::num::ParseIntError> {
    text.parse::<usize>()
}

/// Devices a run trains on: `cpu`, `cpu:N` (N data-parallel CPU replicas) or
/// `cuda:0,1,…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceList {
    /// `n` CPU replicas.
    Cpu(usize),
    /// CUDA device ordinals.
    Cuda(Vec<usize>),
}

impl DeviceList {
    /// Parses `cpu`, `cpu:2`, `cuda:0`, `cuda:0,1`.
    pub fn parse(text: &str) -> Result<Self, DeviceError> {
        let text = text.trim();
        if text == "cpu" {
            return Ok(DeviceList::Cpu(1));
        }
        if let Some(n) = text.strip_prefix("cpu:") {
            let n: usize = n
                .parse()
                .map_err(|_| DeviceError::CpuCount(text.to_string()))?;
            if n == 0 {
                return Err(DeviceError::NoCpuReplica(text.to_string()));
            }
            return Ok(DeviceList::Cpu(n));
        }
        if let Some(list) = text.strip_prefix("cuda:") {
            let ordinals: Result<Vec<usize>, _> =
                list.split(',').map(|s| parse_ordinal(s.trim())).collect();
            let ordinals = ordinals.map_err(|_| DeviceError::CudaOrdinals(text.to_string()))?;
            for (i, &ordinal) in ordinals.iter().enumerate() {
                if ordinals[..i].contains(&ordinal) {
                    return Err(DeviceError::Repeated {
                        list: text.to_string(),
                        ordinal,
                    });
                }
            }
            return Ok(DeviceList::Cuda(ordinals));
        }
        Err(DeviceError::NotAList(text.to_string()))
    }

    /// Number of data-parallel replicas.
    pub fn replicas(&self) -> usize {
        match self {
            DeviceList::Cpu(n) => *n,
            DeviceList::Cuda(v) => v.len(),
        }
    }

    /// Checks that every CUDA ordinal exists on a machine with `cuda_devices` CUDA devices
    /// (what libtorch counts), so a wrong list is refused before a run starts.
    pub fn check_available(&self, cuda_devices: usize) -> Result<(), DeviceError> {
        let DeviceList::Cuda(ordinals) = self else {
            return Ok(());
        };
        match ordinals.iter().find(|&&o| o >= cuda_devices) {
            None => Ok(()),
            Some(&ordinal) if cuda_devices == 0 => Err(DeviceError::NoCuda {
                list: self.clone(),
                ordinal,
            }),
            Some(&ordinal) => Err(DeviceError::Unavailable {
                list: self.clone(),
                ordinal,
                available: cuda_devices,
            }),
        }
    }

    /// The device names, one per replica (`cpu` repeated, or `cuda:i`).
    pub fn names(&self) -> Vec<String> {
        match self {
            DeviceList::Cpu(n) => vec!["cpu".to_string(); *n],
            DeviceList::Cuda(v) => v.iter().map(|i| format!("cuda:{i}")).collect(),
        }
    }
}

impl std::fmt::Display for DeviceList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceList::Cpu(1) => write!(f, "cpu"),
            DeviceList::Cpu(n) => write!(f, "cpu:{n}"),
            DeviceList::Cuda(v) => {
                let list: Vec<String> = v.iter().map(|i| i.to_string()).collect();
                write!(f, "cuda:{}", list.join(","))
            }
        }
    }
}

impl DeviceList {
    /// The list of the devices a run was assigned (`cpu`, or `cuda:N` names), as one list:
    /// `None` when none is a GPU (the run trains on the worker's CPU replicas).
    pub fn from_assigned(names: &[String]) -> Result<Option<DeviceList>, DeviceError> {
        let devices: Vec<Device> = names
            .iter()
            .map(|n| Device::parse(n))
            .collect::<Result<_, _>>()?;
        if !devices.iter().any(|d| d.cuda_ordinal().is_some()) {
            return Ok(None);
        }
        let ordinals: Vec<String> = devices
            .iter()
            .map(|d| match d.cuda_ordinal() {
                Some(o) => o.to_string(),
                None => "cpu".to_string(),
            })
            .collect();
        DeviceList::parse(&format!("cuda:{}", ordinals.join(","))).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!(Device::parse("cpu"), Ok(Device::Cpu));
        assert_eq!(Device::parse("cuda:3"), Ok(Device::Cuda(3)));
        assert_eq!(Device::Cuda(3).to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda: 1", "cpu:2"] {
            let err = Device::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("not a device name"),
                "{bad}: {err}"
            );
        }
        assert_eq!(Device::ordinal_of("cuda:1"), Some(1));
        assert_eq!(Device::ordinal_of("cpu"), None);
    }

    #[test]
    fn assigned_devices_become_one_list() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(DeviceList::from_assigned(&names(&["cpu"])), Ok(None));
        assert_eq!(
            DeviceList::from_assigned(&names(&["cuda:2", "cuda:0"])),
            Ok(Some(DeviceList::Cuda(vec![2, 0])))
        );
        assert!(DeviceList::from_assigned(&names(&["cuda:0", "cpu"])).is_err());
        assert!(DeviceList::from_assigned(&names(&["cuda:0", "cuda:0"])).is_err());
    }
}
