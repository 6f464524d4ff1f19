//! `system.info`: the machine the gateway runs on, as the Control UI's Systems page shows it.
//! The core reads nothing itself: it asks the host ([`Work::DescribeMachine`]) and answers
//! in upstream's `SystemInfoResult` shape when the description comes back, adding what it
//! knows (port, process instance, uptime). `nodeVersion`, which the schema requires, names
//! clawgate's version (no Node runs here).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::{Call, NoParams, Reply};
use crate::conn::ConnId;
use crate::gateway::{Gateway, Output};
use crate::work::{MachineInfo, Work, WorkId};

/// The `system.info` calls waiting for the host, by work.
#[derive(Debug, Default)]
pub(crate) struct MachineCalls {
    pending: HashMap<WorkId, (ConnId, String)>,
}

/// Node's name for a Rust target architecture (`os.arch()`), which the UI shows.
fn node_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// The operating system's label as upstream writes it (`Linux 6.1.0`).
fn os_label(platform: &str, release: &str) -> String {
    let name = match platform {
        "linux" => "Linux",
        "macos" => "macOS",
        "freebsd" => "FreeBSD",
        other => other,
    };
    format!("{name} {release}").trim().to_string()
}

impl Gateway {
    /// `system.info`: ask the host to describe the machine; answered in [`Gateway::on_machine`].
    pub(crate) fn system_info(&mut self, _: Instant, call: &Call<'_>, _: NoParams) -> Reply {
        let id = self.next_work_id();
        self.machine_calls
            .pending
            .insert(id, (call.conn, call.req_id.to_string()));
        self.out.push_back(Output::Work {
            id,
            work: Work::DescribeMachine,
        });
        Reply::Later
    }

    /// The host described the machine: answer the call that asked.
    pub(crate) fn on_machine(&mut self, now: Instant, id: WorkId, info: MachineInfo) {
        let Some((conn, req_id)) = self.machine_calls.pending.remove(&id) else {
            return;
        };
        let platform = std::env::consts::OS;
        let mut out = Map::new();
        out.insert("machineName".into(), json!(info.hostname));
        out.insert("hostname".into(), json!(info.hostname));
        out.insert("platform".into(), json!(platform));
        out.insert("release".into(), json!(info.release));
        out.insert("arch".into(), json!(node_arch(std::env::consts::ARCH)));
        out.insert("osLabel".into(), json!(os_label(platform, &info.release)));
        out.insert("port".into(), json!(self.config.port));
        let version = concat!("clawgate ", env!("CARGO_PKG_VERSION"));
        out.insert("nodeVersion".into(), json!(version));
        out.insert("pid".into(), json!(info.pid));
        out.insert("processInstanceId".into(), json!(self.boot_id));
        out.insert("uptimeMs".into(), json!(self.uptime_ms(now)));
        out.insert("cpuCount".into(), json!(info.cpu_count));
        if let Some(model) = info.cpu_model {
            out.insert("cpuModel".into(), json!(model));
        }
        if let Some(load) = info.load_milli {
            let avg: Vec<f64> = load.iter().map(|l| *l as f64 / 1000.0).collect();
            out.insert("loadAverage".into(), json!(avg));
        }
        out.insert("memoryTotalBytes".into(), json!(info.memory_total_bytes));
        out.insert("memoryFreeBytes".into(), json!(info.memory_free_bytes));
        self.answer(now, conn, &req_id, Ok(Value::Object(out)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_and_os_read_as_node_writes_them() {
        assert_eq!(node_arch("x86_64"), "x64");
        assert_eq!(node_arch("aarch64"), "arm64");
        assert_eq!(node_arch("riscv64"), "riscv64");
        assert_eq!(os_label("linux", "6.1.0-rpi7"), "Linux 6.1.0-rpi7");
        assert_eq!(os_label("linux", ""), "Linux");
    }
}
