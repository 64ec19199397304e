//! Behaviour of a disk set on real directories: round trips, ranges, lost and corrupted
//! disks, healing, scrubbing, write quorum and crash recovery. Faults are injected for real
//! (directories removed, bytes flipped, a writer process killed with SIGKILL).

mod support;

mod damage_reports;
mod delete;
mod heal;
mod interrupted_write;
mod inventory;
mod lost_disks;
mod open;
mod ranges;
mod round_trip;
mod scrub;
mod write_quorum;
