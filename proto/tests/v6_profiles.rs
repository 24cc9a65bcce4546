//! The SOCKS 6 profile table and the server machine agree: every first byte
//! the table routes is handled as the table says.

use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake, Step};
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
            // `06`: the profile is chosen a few bytes later.
            (Some(Route::Sniff), Instruction::NeedMore(_)) => {
                assert_eq!(hs.socks6_profile(), None, "{byte:#04x}")
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

/// A machine on a listener with `setting`, after `bytes`.
fn after(bytes: &[u8], setting: ProfileSetting) -> (ServerHandshake, Step) {
    let mut hs = ServerHandshake::new(HandshakeConfig::default())
        .with_socks6(Socks6Limits::default())
        .with_socks6_setting(setting);
    hs.input().push(bytes);
    let step = hs.step();
    (hs, step)
}

// The first flights of each profile: CONNECT 127.0.0.1:7777, no options.
const D05: &[u8] = &[0x06, 0x00, 0x01, 0x1E, 0x61, 0x01, 0x7F, 0, 0, 1, 0];
const D11: &[u8] = &[0x06, 0x01, 0, 0, 0x1E, 0x61, 0, 1, 0x7F, 0, 0, 1];
const R207: &[u8] = &[0xCF, 0x01, 0, 0, 0x1E, 0x61, 0, 1, 0x7F, 0, 0, 1];

#[test]
fn each_profile_is_spoken_on_one_auto_listener() {
    for (bytes, profile) in [
        (D05, Profile::Draft05),
        (D11, Profile::Draft11),
        (R207, Profile::Ref207),
    ] {
        let (hs, step) = after(bytes, ProfileSetting::Auto);
        assert_eq!(hs.socks6_profile(), Some(profile));
        match step {
            Instruction::Finished {
                value: Accepted::Socks6(req),
                ..
            } => {
                assert_eq!(req.profile, profile);
                assert_eq!(req.target.to_string(), "127.0.0.1:7777");
            }
            other => panic!("{profile}: {other:?}"),
        }
    }
}

#[test]
fn a_listener_set_to_a_profile_answers_the_other_with_its_mismatch() {
    // A -11 request on a -05 listener: -05's `06 00`.
    let (_, step) = after(D11, ProfileSetting::Only(Profile::Draft05));
    assert_eq!(
        step,
        Instruction::Failed {
            reply: vec![0x06, 0x00],
            error: PeerError::VersionMismatch.into()
        }
    );
    // The reference dialect is spoken whatever the setting.
    let (hs, _) = after(R207, ProfileSetting::Only(Profile::Draft05));
    assert_eq!(hs.socks6_profile(), Some(Profile::Ref207));
}

#[test]
fn a_header_trickled_byte_by_byte_chooses_the_same_profile() {
    for (bytes, profile) in [(D05, Profile::Draft05), (D11, Profile::Draft11)] {
        let mut hs =
            ServerHandshake::new(HandshakeConfig::default()).with_socks6(Socks6Limits::default());
        let mut last = None;
        for &b in bytes {
            hs.input().push(&[b]);
            last = Some(hs.step());
        }
        assert_eq!(hs.socks6_profile(), Some(profile));
        assert!(
            matches!(last, Some(Instruction::Finished { .. })),
            "{last:?}"
        );
    }
}
