"""The DICOM domain: reading a stored file's header and turning its values into columns."""
