//! Faults the node simulation injects: crashes, clean stops and restarts, network partitions, process pauses, a full disk, and connections reset.

use super::*;

impl Sim {
    pub(super) fn mean_delay(r: &mut Rng, mean_ms: u64) -> u64 {
        r.range(1, 2 * mean_ms)
    }

    pub(super) fn schedule_crash(&mut self) {
        if self.safety() && self.swarm.crash_mean_ms > 0 {
            let d = self.rng.faults.range(1, 2 * self.swarm.crash_mean_ms);
            self.at(d, Event::Crash);
        }
    }

    pub(super) fn schedule_partition(&mut self) {
        if self.safety() && self.swarm.partition_mean_ms > 0 {
            let d = Self::mean_delay(&mut self.rng.netmore, self.swarm.partition_mean_ms);
            self.at(d, Event::Partition);
        }
    }

    pub(super) fn schedule_pause(&mut self) {
        if self.safety() && self.swarm.pause_mean_ms > 0 {
            let d = Self::mean_delay(&mut self.rng.pauses, self.swarm.pause_mean_ms);
            self.at(d, Event::Pause);
        }
    }

    pub(super) fn schedule_disk_full(&mut self) {
        if self.safety() && self.swarm.enospc_mean_ms > 0 {
            let d = Self::mean_delay(&mut self.rng.disk, self.swarm.enospc_mean_ms);
            self.at(d, Event::DiskFull);
        }
    }

    /// The node went away (crash or clean stop): every connection to it is reset, and its
    /// clients learn of it (the kernel closes the sockets).
    pub(super) fn connections_reset(&mut self) {
        self.paused = false;
        self.held.clear();
        self.req_conn.clear();
        for c in self.net.clients_of(NODE) {
            let old = self.net.epoch(c, NODE);
            self.net.reset(c, NODE);
            let d = self.rng.net.range(0, self.swarm.latency_max_ms);
            self.at(
                d,
                Event::ConnLost {
                    client: c,
                    epoch: old,
                },
            );
        }
    }

    pub(super) fn crash_now(&mut self) {
        let (rep, scanned) = self.node.crash(&mut self.rng.faults, &self.swarm);
        let rot = if self.rng.faults.chance(self.swarm.corrupt_ppm) && self.decide("rot") {
            let h = &self.history;
            let frontier = |t: TopicId, p: u32| h.damage_floor((t, p));
            self.node.rot(&mut self.rng.faults, &scanned, &frontier)
        } else {
            None
        };
        let mis = if self.rng.disk.chance(self.swarm.misdirect_ppm) && self.decide("misdirect") {
            let h = &self.history;
            let frontier = |t: TopicId, p: u32| h.damage_floor((t, p));
            self.node.misdirect(&mut self.rng.disk, &scanned, &frontier)
        } else {
            None
        };
        self.history.on_crash();
        self.connections_reset();
        self.log(format!(
            "crash lost_writes={} torn={} zeroed={} lost_files={} resurrected={} rot={} misdirected={}",
            rep.writes_lost,
            rep.torn,
            rep.zero_filled,
            rep.files_lost,
            rep.files_resurrected,
            rot.unwrap_or_else(|| "-".into()),
            mis.unwrap_or_else(|| "-".into()),
        ));
        let d = self.rng.faults.range(1, self.swarm.downtime_max_ms.max(1));
        self.at(d, Event::Restart);
    }

    /// SIGTERM: the node closes cleanly (skein-broker's `Broker::close`), then restarts later. A
    /// crash armed earlier can still kill the disk in the middle of the close.
    pub(super) fn clean_stop(&mut self) {
        self.node.shutdown();
        self.history.on_crash();
        self.connections_reset();
        self.log("clean shutdown".into());
        let d = self.rng.faults.range(1, self.swarm.downtime_max_ms.max(1));
        self.at(d, Event::Restart);
    }

    pub(super) fn restart(&mut self) -> Verdict {
        if let Err(e) = self.node.restart(self.now) {
            self.log(format!("start failed: {e}; the broker exits"));
            let d = self.rng.faults.range(1, self.swarm.downtime_max_ms.max(1));
            self.at(d, Event::Restart);
            return Ok(());
        }
        let parts = self.node.partitions();
        let offs: Vec<String> = parts
            .iter()
            .map(|(k, _, s, e)| format!("{}-{}={s}..{e}", k.0, k.1))
            .collect();
        self.log(format!(
            "restart inc={} clean={} {}",
            self.node.incarnation,
            self.node.last_start_clean,
            offs.join(" ")
        ));
        self.audit_offsets()?;
        self.probe_retries()?;
        self.refresh_view();
        self.schedule_crash();
        Ok(())
    }

    /// Resumes a paused node: it works through what arrived meanwhile, in arrival order, before
    /// anything else (so a connection stays FIFO across a pause).
    pub(super) fn resume(&mut self) -> Verdict {
        if !self.paused {
            return Ok(());
        }
        self.paused = false;
        self.log(format!("resume ({} held)", self.held.len()));
        for ev in std::mem::take(&mut self.held) {
            if self.node.disk().is_dead() {
                break;
            }
            self.handle(ev)?;
        }
        Ok(())
    }

    /// Cuts links: one client both ways, one client's requests, one client's responses, or the
    /// node from every client.
    pub(super) fn partition(&mut self) {
        if !self.safety() {
            return;
        }
        let r = &mut self.rng.netmore;
        let mode = r.below(4);
        let n = self.clients.len();
        let one = r.below(n as u64) as usize;
        let cut: Vec<(usize, Dir)> = match mode {
            0 => vec![(one, Dir::Request), (one, Dir::Response)],
            1 => vec![(one, Dir::Request)],
            2 => vec![(one, Dir::Response)],
            _ => (0..n)
                .flat_map(|c| [(c, Dir::Request), (c, Dir::Response)])
                .collect(),
        };
        let d = self.rng.netmore.range(1, self.swarm.partition_max_ms);
        if self.decide("partition") {
            for (c, dir) in &cut {
                self.net.link(*c, NODE).down[*dir as usize] = true;
            }
            self.log(format!("partition {cut:?} for {d}ms"));
            self.at(d, Event::Heal(cut));
        }
        self.schedule_partition();
    }
}
