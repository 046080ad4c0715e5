# A flow record read by tools (trace, flow log): a copy of a ct_flow_t as a Python dict.
from libc.stdint cimport uint32_t
from kdp._fast.ct_table cimport ct_flow_t

cdef dict flow_dict(const ct_flow_t* f, uint32_t fid)
