//! The SOCKS 6 profile table and the server machine agree: every first byte
//! the table routes is handled as the table says.

use sixsocks_proto::server::{HandshakeConfig, ServerHandshake, Step};
use sixsocks_proto::v6::{Profile, ProfileSetting, Route, Socks6Limits};
use sixsocks_proto::{Instruction, PeerError, ProtoError};

/// A machine with SOCKS 6 on, after seeing only `first`.
fn first_byte(first: u8) -> (ServerHandshake, Step) {
    let mut hs =
        ServerHandshake::new(HandshakeConfig::default()).with_socks6(Socks6Limits::default());
    hs.input().push(&[first]);
    let step = hs.step();
    (hs, step)
}

#[test]
fn the_machine_follows_the_profile_table() {
    for byte in 0..=0xFFu8 {
        let (hs, step) = first_byte(byte);
        match (Profile::route(byte, ProfileSetting::Auto), step) {
            (Some(Route::Speak(p)), Instruction::NeedMore(_)) => {
                assert_eq!(hs.socks6_profile(), Some(p), "{byte:#04x}")
            }
            (
                Some(Route::Mismatch(p)),
                Instruction::Failed {
                    reply,
                    error: ProtoError::Peer(PeerError::VersionMismatch),
                },
            ) => assert_eq!(reply, p.codec().version_mismatch_reply(), "{byte:#04x}"),
            (None, _) => assert_eq!(hs.socks6_profile(), None, "{byte:#04x}"),
            (route, step) => panic!("{byte:#04x}: the table says {route:?}, the machine {step:?}"),
        }
    }
}

#[test]
fn cf_is_answered_with_the_draft05_version_mismatch() {
    let (_, step) = first_byte(0xCF);
    assert_eq!(
        step,
        Instruction::Failed {
            reply: vec![0x06, 0x00],
            error: PeerError::VersionMismatch.into()
        }
    );
}
