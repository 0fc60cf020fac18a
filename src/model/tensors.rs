//! Reading and writing named float32 tensors in the safetensors format (the bundle's
//! `weights.safetensors` and the test fixtures).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// Errors reading or writing a tensor file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path} has no tensor named '{name}'")]
    Missing { path: PathBuf, name: String },
    #[error("tensor '{name}' in {path} is {dtype}, expected F32")]
    Dtype { path: PathBuf, name: String, dtype: String },
    #[error("tensor '{name}' in {path} has shape {actual:?}, expected {expected:?}")]
    Shape { path: PathBuf, name: String, actual: Vec<usize>, expected: Vec<usize> },
}

/// All tensors of one safetensors file, kept as raw bytes until asked for.
#[derive(Debug)]
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Parses bytes already read from `path` (named in errors).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, TensorFileError> {
        let file = TensorFile { path: path.to_path_buf(), bytes };
        file.parse()?;
        Ok(file)
    }

    pub fn open(path: &Path) -> Result<Self, TensorFileError> {
        let bytes =
            std::fs::read(path).map_err(|source| TensorFileError::Io { path: path.to_path_buf(), source })?;
        let file = TensorFile { path: path.to_path_buf(), bytes };
        file.parse()?;
        Ok(file)
    }

    fn parse(&self) -> Result<SafeTensors<'_>, TensorFileError> {
        SafeTensors::deserialize(&self.bytes)
            .map_err(|e| TensorFileError::Format { path: self.path.clone(), reason: e.to_string() })
    }

    /// Names of the tensors in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.parse().map(|t| t.names().into_iter().cloned().collect()).unwrap_or_default();
        names.sort();
        names
    }

    /// The float32 tensor `name`, of any shape.
    pub fn get(&self, name: &str) -> Result<ArrayD<f32>, TensorFileError> {
        let tensors = self.parse()?;
        let view = tensors
            .tensor(name)
            .map_err(|_| TensorFileError::Missing { path: self.path.clone(), name: name.to_string() })?;
        if view.dtype() != Dtype::F32 {
            return Err(TensorFileError::Dtype {
                path: self.path.clone(),
                name: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(ArrayD::from_shape_vec(IxDyn(view.shape()), data).expect("safetensors validated the shape"))
    }

    /// The float32 tensor `name`, which must have exactly `shape`.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<ArrayD<f32>, TensorFileError> {
        let t = self.get(name)?;
        if t.shape() != shape {
            return Err(TensorFileError::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                actual: t.shape().to_vec(),
                expected: shape.to_vec(),
            });
        }
        Ok(t)
    }
}

/// Serialises named float32 tensors (row-major) to safetensors bytes, names sorted.
pub fn to_bytes(tensors: &BTreeMap<String, ArrayD<f32>>) -> Vec<u8> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes = t.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), t.shape().to_vec(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches data length");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, &None).expect("in-memory serialisation of valid views")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_file_and_tensor() {
        let dir = std::env::temp_dir().join(format!("inspectd-tensors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let mut map = BTreeMap::new();
        map.insert(
            "bank".to_string(),
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        );
        std::fs::write(&path, to_bytes(&map)).unwrap();
        let file = TensorFile::open(&path).unwrap();
        assert_eq!(file.get("bank").unwrap(), map["bank"]);
        assert_eq!(file.names(), vec!["bank".to_string()]);
        let err = file.get_shaped("bank", &[3, 2]).unwrap_err().to_string();
        assert!(err.contains("w.safetensors") && err.contains("[2, 3]"), "{err}");
        let err = file.get("radius").unwrap_err().to_string();
        assert!(err.contains("radius"), "{err}");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(TensorFile::open(&path).unwrap_err().to_string().contains("not a valid safetensors"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
