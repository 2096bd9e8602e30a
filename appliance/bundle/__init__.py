"""Signed offline bundles: built on a connected station, verified and installed on hosts.

`repository` (trust root, signing), `build` (quantize, seal, wheels, SBOM),
`archive` (the tar, read without extracting), `verify` (TUF client workflow
over the tar), `host` (releases, switching, rollback).
"""
