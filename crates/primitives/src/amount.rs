//! Amounts in base units, with checked arithmetic and exact decimal parsing.

use std::fmt;
use std::str::FromStr;

use crate::PrimitivesError;

/// Base units in one coin.
pub const COIN: u64 = 100_000_000;
/// Decimal places of a coin amount.
pub const DECIMALS: usize = 8;

/// An amount of base units. Sums are always checked: no operation here wraps.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    bincode::Encode,
    bincode::Decode,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const fn from_base_units(v: u64) -> Self {
        Amount(v)
    }
    pub const fn to_base_units(self) -> u64 {
        self.0
    }
    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }
    pub fn checked_sub(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(Amount)
    }

    /// Sum of amounts, `None` on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(it: I) -> Option<Amount> {
        it.into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }

    /// Parses whole coins with up to 8 decimals: `"1.5"`, `"0.00000001"`, `"21"`.
    /// No sign, exponent, separator or whitespace is accepted.
    pub fn parse_coins(s: &str) -> Result<Amount, PrimitivesError> {
        let err = |reason| PrimitivesError::Amount {
            input: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected digits before the decimal point"));
        }
        if s.contains('.') && frac.is_empty() {
            return Err(err("expected digits after the decimal point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected digits after the decimal point"));
        }
        if frac.len() > DECIMALS {
            return Err(err("more than 8 decimal places"));
        }
        let whole: u64 = whole.parse().map_err(|_| err("too large"))?;
        let mut frac_units: u64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_units += u64::from(b - b'0') * 10u64.pow((DECIMALS - 1 - i) as u32);
        }
        whole
            .checked_mul(COIN)
            .and_then(|w| w.checked_add(frac_units))
            .map(Amount)
            .ok_or_else(|| err("too large"))
    }

    /// Formats as whole coins with exactly 8 decimals, e.g. `1.50000000`.
    pub fn to_coin_string(self) -> String {
        format!("{}.{:08}", self.0 / COIN, self.0 % COIN)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_coin_string())
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl FromStr for Amount {
    type Err = PrimitivesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse_coins(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Amount::parse_coins("1.5").unwrap(), Amount(150_000_000));
        assert_eq!(Amount::parse_coins("0.00000001").unwrap(), Amount(1));
        assert_eq!(Amount::parse_coins("21").unwrap(), Amount(21 * COIN));
        assert_eq!(Amount::parse_coins("0").unwrap(), Amount(0));
    }

    #[test]
    fn rejects_bad_amounts() {
        for bad in [
            "",
            "-1",
            "+1",
            "1.",
            ".5",
            "1.000000001",
            "1e8",
            " 1",
            "1,5",
            "184467440738",
        ] {
            assert!(Amount::parse_coins(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(0).checked_sub(Amount(1)), None);
        assert_eq!(Amount::checked_sum([Amount(u64::MAX), Amount(1)]), None);
        assert_eq!(Amount::checked_sum([Amount(2), Amount(3)]), Some(Amount(5)));
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(v in any::<u64>()) {
            let a = Amount(v);
            prop_assert_eq!(Amount::parse_coins(&a.to_coin_string()).unwrap(), a);
        }
    }
}
