//! Why a mail is parked: one closed list. Each reason's code is what goes on the wire
//! (the `x-acaso-reason` header), into the metrics' `reason` label and into
//! `dead-letters --reason`; a new reason is one line in `park_reasons!`'s list below,
//! and every `match` on [`ParkReason`] then says where it must be handled.

use std::fmt;
use std::str::FromStr;

/// Declares [`ParkReason`], its codes and the list of them, from one table.
macro_rules! park_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => $code:literal,)*) => {
        /// Why a mail is parked.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ParkReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ParkReason {
            /// Every reason, in the order they are listed (and documented).
            pub const ALL: &'static [ParkReason] = &[$(ParkReason::$variant,)*];
            /// Every reason's code, in the same order.
            pub const CODES: &'static [&'static str] = &[$($code,)*];

            /// The code on the wire: the `x-acaso-reason` header, the metrics' label.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ParkReason::$variant => $code,)*
                }
            }
        }
    };
}

park_reasons! {
    /// Its deadline passed before it could be sent.
    Expired => "expired",
    /// Not JSON, or JSON of the wrong shape.
    Malformed => "malformed",
    /// Its body is not UTF-8.
    NotUtf8 => "not_utf8",
    /// Its body is over the size limit.
    TooLarge => "too_large",
    /// A legacy template id with no params mapping.
    UnknownTemplate => "unknown_template",
    /// An address Brevo would refuse.
    InvalidAddress => "invalid_address",
    /// Brevo refused it for good.
    BrevoRejected => "brevo_rejected",
    /// Brevo answered `duplicate_parameter` to a mail never attempted before.
    BrevoDuplicate => "brevo_duplicate",
    /// Every attempt failed, and none may have gone.
    RetriesExhausted => "retries_exhausted",
    /// An attempt may have gone, and Brevo's log cannot tell: a person checks.
    UncertainSend => "uncertain_send",
    /// Every recipient is an address Brevo reported hard-bounced, invalid, blocked or
    /// complaining (`acaso-mail events`): sending would spend a credit for nothing.
    Suppressed => "suppressed",
}

impl fmt::Display for ParkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParkReason {
    type Err = String;

    /// A reason from its code; an unknown code is refused, listing the known ones.
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == code)
            .ok_or_else(|| {
                format!(
                    "unknown reason {code:?}: expected one of {}",
                    Self::CODES.join(", ")
                )
            })
    }
}

impl PartialEq<&str> for ParkReason {
    fn eq(&self, code: &&str) -> bool {
        self.as_str() == *code
    }
}

impl PartialEq<ParkReason> for &str {
    fn eq(&self, reason: &ParkReason) -> bool {
        *self == reason.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_todays_wire_strings_and_read_back() {
        // On the wire (headers), in metrics labels and in `--reason`: never renamed.
        assert_eq!(
            ParkReason::CODES,
            [
                "expired",
                "malformed",
                "not_utf8",
                "too_large",
                "unknown_template",
                "invalid_address",
                "brevo_rejected",
                "brevo_duplicate",
                "retries_exhausted",
                "uncertain_send",
                "suppressed",
            ]
        );
        assert_eq!(ParkReason::ALL.len(), ParkReason::CODES.len());
        for (r, code) in ParkReason::ALL.iter().zip(ParkReason::CODES) {
            assert_eq!(r.as_str(), *code);
            assert_eq!(r.to_string(), *code);
            assert_eq!(code.parse::<ParkReason>(), Ok(*r));
        }
        let refused = "Expired".parse::<ParkReason>().expect_err("case matters");
        assert!(refused.contains("\"Expired\"") && refused.contains("uncertain_send"));
    }
}
