"""Personal data over time: key rotation, a volunteer's erasure, and retention.

`rotation` rewrites everything encrypted or keyed-hashed under the current key;
`erasure` removes one volunteer's name and contact details from every table and the
spool; `retention` erases what has been kept longer than `ALN_RETENTION_DAYS`.
"""
