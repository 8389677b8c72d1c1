/* One log line per event, to stderr, filtered by level. */
#ifndef QRXFER_SIP_LOG_H
#define QRXFER_SIP_LOG_H

enum sip_log_level { SIP_LOG_ERROR, SIP_LOG_WARN, SIP_LOG_INFO, SIP_LOG_DEBUG };

extern int sip_log_level;

/* Print "qrxfer: <part>: <message>" when level is enabled. */
void sip_log(enum sip_log_level level, const char *part, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_ERR(part, ...)   sip_log(SIP_LOG_ERROR, part, __VA_ARGS__)
#define LOG_WARN(part, ...)  sip_log(SIP_LOG_WARN, part, __VA_ARGS__)
#define LOG_INFO(part, ...)  sip_log(SIP_LOG_INFO, part, __VA_ARGS__)
#define LOG_DEBUG(part, ...) sip_log(SIP_LOG_DEBUG, part, __VA_ARGS__)

#endif
