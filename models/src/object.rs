//! Objects that must arrive as JSON objects. serde's derived structs also take the array of
//! their fields in order (`[null, null]` for a two-field struct of options), which the API's
//! contract does not allow; these helpers accept a map only.

use std::marker::PhantomData;

use serde::de::{value::MapAccessDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `T`, read only from a map.
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(PhantomData)).map(Object)
    }
}

/// For `#[serde(default, deserialize_with = "crate::object::optional")]`: absent or `null` is
/// `None`, an object is `Some`, anything else is an error.
pub fn optional<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Pair {
        a: Option<u8>,
        b: Option<u8>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Holder {
        #[serde(default, deserialize_with = "optional")]
        pair: Option<Pair>,
    }

    #[test]
    fn only_objects_or_null() {
        let h: Holder = serde_json::from_str(r#"{"pair": {"a": 1}}"#).unwrap();
        assert_eq!(h.pair, Some(Pair { a: Some(1), b: None }));
        assert_eq!(serde_json::from_str::<Holder>(r#"{"pair": null}"#).unwrap().pair, None);
        assert_eq!(serde_json::from_str::<Holder>("{}").unwrap().pair, None);
        assert!(serde_json::from_str::<Holder>(r#"{"pair": [null, null]}"#).is_err());
        // The plain derive takes the array, which is what this guards against.
        assert!(serde_json::from_str::<Pair>("[null, null]").is_ok());
        assert!(serde_json::from_str::<Object<Pair>>("[null, null]").is_err());
    }
}
