/*
 * libsystemd.so.0 for the guest's crun: the entry points crun 1.8 imports,
 * none of which does anything in a pod VM. The guest has no systemd, so
 * crun's systemd cgroup manager (sd_bus_*) is never chosen, no
 * NOTIFY_SOCKET reaches crun, and no log goes to the journal. Each call
 * fails with ENOSYS (sd_notify has nothing to notify and says so with 0),
 * as libsystemd itself would without a bus to talk to. See
 * guestimage/sdstub.go for why the guest does not carry the real library.
 */
#include <errno.h>
#include <stddef.h>

int sd_bus_call(void *bus, void *m, unsigned long long usec, void *error, void **reply) { return -ENOSYS; }
int sd_bus_default_system(void **bus) { return -ENOSYS; }
int sd_bus_default_user(void **bus) { return -ENOSYS; }
void sd_bus_error_free(void *error) { }
int sd_bus_error_get_errno(const void *error) { return ENOSYS; }
int sd_bus_match_signal_async(void *bus, void **slot, const char *sender, const char *path, const char *iface,
                              const char *member, void *callback, void *install_callback, void *userdata) { return -ENOSYS; }
int sd_bus_message_append(void *m, const char *types, ...) { return -ENOSYS; }
int sd_bus_message_append_strv(void *m, char **l) { return -ENOSYS; }
int sd_bus_message_close_container(void *m) { return -ENOSYS; }
int sd_bus_message_new_method_call(void *bus, void **m, const char *dest, const char *path, const char *iface,
                                   const char *member) { return -ENOSYS; }
int sd_bus_message_open_container(void *m, char type, const char *contents) { return -ENOSYS; }
int sd_bus_message_read(void *m, const char *types, ...) { return -ENOSYS; }
void *sd_bus_message_unref(void *m) { return NULL; }
int sd_bus_process(void *bus, void **r) { return -ENOSYS; }
void *sd_bus_unref(void *bus) { return NULL; }
int sd_bus_wait(void *bus, unsigned long long timeout_usec) { return -ENOSYS; }
int sd_journal_send_with_location(const char *file, const char *line, const char *func, const char *format, ...) { return -ENOSYS; }
int sd_notify(int unset_environment, const char *state) { return 0; }
int sd_notify_barrier(int unset_environment, unsigned long long timeout) { return 0; }
