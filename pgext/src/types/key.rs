//! Keys whose bytes sort and compare as Postgres's values do, for values
//! carried as images whose bytes do not: equal numerics of different
//! display scales (`1.0`, `1.00`) have different images, and an image's
//! bytes are not in numeric order. DataFusion sorts, partitions and groups
//! such keys natively, in every participant.
//!
//! A numeric's key is a memcomparable encoding of its value (the scheme of
//! order-preserving key encodings in key-value stores: a class byte, then
//! the exponent and digits, inverted for negative numbers): one class byte
//! in Postgres's order of values (`-Infinity` < negative < zero < positive
//! < `Infinity` < `NaN`, numeric.c's `cmp_numerics`), then for a nonzero
//! number its weight and base-10000 digits as big-endian 16-bit words.
//! Postgres stores digits without leading or trailing zeros, so equal
//! values have equal digits and weight whatever their display scale, and
//! the key drops the display scale. For a positive number a larger weight,
//! then larger digits, then more digits mean a larger value, which is the
//! bytes' order; a negative number's words are inverted and end in a word
//! above any inverted digit, so that of two with the same leading digits
//! the one with more digits (the larger magnitude) sorts first.

use super::read::NumericImage;
use crate::error::Error;

/// Classes of values, in Postgres's order.
const NEG_INFINITY: u8 = 1;
const NEGATIVE: u8 = 2;
const ZERO: u8 = 3;
const POSITIVE: u8 = 4;
const POS_INFINITY: u8 = 5;
const NAN: u8 = 6;
/// Ends a negative number's digits: above `9999 - digit` for any digit.
const NEGATIVE_END: u16 = 0xFFFF;

/// Appends to `out` the key of the numeric whose image (`NumericData`
/// after the varlena header) is `image` (so `1.5` and `1.50` have one
/// key, and `-2`'s sorts before `-1.5`'s); see the module docs.
pub fn numeric_key(image: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    const CORRUPT: &str = NumericImage::CORRUPT;
    let special = |class: u8, out: &mut Vec<u8>| {
        out.push(class);
        Ok(())
    };
    let (negative, weight, digits) = match NumericImage::read(image)? {
        NumericImage::NaN => return special(NAN, out),
        NumericImage::PosInfinity => return special(POS_INFINITY, out),
        NumericImage::NegInfinity => return special(NEG_INFINITY, out),
        NumericImage::Number {
            negative,
            weight,
            digits,
        } => (negative, weight, digits),
    };
    let mut digits = digits
        .chunks_exact(2)
        .map(|pair| match u16::from_ne_bytes([pair[0], pair[1]]) {
            d if d < 10_000 => Ok(d),
            _ => Err(Error::from(CORRUPT)),
        })
        .collect::<Result<Vec<u16>, Error>>()?;
    // Postgres strips zero digits at both ends; a value that kept some
    // still gets the key of its value.
    let leading = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..leading);
    let weight = weight - leading as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        out.push(ZERO);
        return Ok(());
    }
    let weight = i16::try_from(weight).map_err(|_| Error::from(CORRUPT))?;
    // The weight biased so that its bytes sort as the number does.
    let biased = (weight as u16) ^ 0x8000;
    if negative {
        out.push(NEGATIVE);
        out.extend_from_slice(&(!biased).to_be_bytes());
        for d in digits {
            out.extend_from_slice(&(9_999 - d).to_be_bytes());
        }
        out.extend_from_slice(&NEGATIVE_END.to_be_bytes());
    } else {
        out.push(POSITIVE);
        out.extend_from_slice(&biased.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
    }
    Ok(())
}
