#include "data/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void dml_tmp_path(const char *path, char *tmp, size_t n)
{
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    snprintf(tmp, n, "%.*s.%s.tmp.%ld", dir_len, path, path + dir_len, (long)getpid());
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

dml_status dml_file_commit(const char *tmp, const char *path, dml_error *err)
{
    if (fsync_path(tmp, O_RDONLY) != 0 || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the file: %s",
                             strerror(saved));
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) + (slash == path), path);
    else
        snprintf(dir, sizeof dir, ".");
    fsync_path(dir, O_RDONLY | O_DIRECTORY); /* best effort: some filesystems refuse */
    return DML_OK;
}

dml_status dml_mkdirs(const char *dir, dml_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return dml_error_set(err, DML_ERR_IO, buf, 0, 0, "cannot create the folder: %s",
                                     strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return DML_OK;
}

int dml_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
