/* SPDX-License-Identifier: GPL-2.0 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM hyperps

#if !defined(_HPS_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _HPS_TRACE_H

#include <linux/tracepoint.h>

/* One refused write; the same fields as a line of debugfs hyperps/refusals. */
TRACE_EVENT(hyperps_refusal,
	    TP_PROTO(u32 class, const char *reason, u64 subject, u64 old,
		     u64 new, bool enforced),
	    TP_ARGS(class, reason, subject, old, new, enforced),
	    TP_STRUCT__entry(__field(u32, class)
			     __string(reason, reason)
			     __field(u64, subject)
			     __field(u64, old)
			     __field(u64, new)
			     __field(bool, enforced)),
	    TP_fast_assign(__entry->class = class;
			   __assign_str(reason);
			   __entry->subject = subject;
			   __entry->old = old;
			   __entry->new = new;
			   __entry->enforced = enforced;),
	    TP_printk("class=%u reason=%s subject=0x%llx old=0x%llx new=0x%llx enforced=%d",
		      __entry->class, __get_str(reason), __entry->subject,
		      __entry->old, __entry->new, __entry->enforced)
);

#endif /* _HPS_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE hps_trace
#include <trace/define_trace.h>
