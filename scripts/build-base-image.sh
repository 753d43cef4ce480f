#!/usr/bin/env bash
# Builds agentbox/base:latest, the docker backend's default image, without a registry: a small
# root filesystem assembled from Debian packages (apt-get download + dpkg-deb -x) and imported
# with `docker import`. The image holds bash, coreutils, grep, sed, findutils, procps, tar,
# gzip, diffutils, awk, which and their libraries; agentbox-guest is not in it (the backend
# bind-mounts it).
#
# Idempotent: the image carries the label agentbox.content-hash = sha256 of this script and of
# the exact package versions; when an image with that hash exists nothing is done.
#
#   AGENTBOX_BASE_IMAGE   image reference to build (default agentbox/base:latest)
#   --force               rebuild even when the hash matches
set -euo pipefail

image="${AGENTBOX_BASE_IMAGE:-agentbox/base:latest}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

# The packages, listed explicitly (a dependency walk with apt-cache takes minutes on a busy
# machine and drags in dpkg, perl and debconf): the tools, then the libraries they link. The
# library check below fails the build if an update ever needs one more.
PACKAGES=(
  base-files bash coreutils debianutils diffutils findutils grep gzip hostname libc-bin mawk
  ncurses-base procps sed tar
  gcc-12-base libacl1 libattr1 libc6 libcap2 libgcc-s1 libgcrypt20 libgmp10 libgpg-error0
  liblz4-1 liblzma5 libncursesw6 libpcre2-8-0 libproc2-0 libselinux1 libsystemd0 libtinfo6
  libzstd1
)

if ! command -v docker >/dev/null 2>&1; then
  echo "build-base-image: the docker CLI is missing (scripts/install-deps.sh installs docker.io)" >&2
  exit 1
fi

# Exact candidate versions, in one apt-cache call: they and this script make the content hash.
versions=$(apt-cache policy "${PACKAGES[@]}" | awk '
  /^[^ ].*:$/ { pkg = substr($1, 1, length($1) - 1) }
  /Candidate:/ { print pkg "=" $2 }' | sort)
if grep -q '=(none)$' <<<"$versions" || (($(wc -l <<<"$versions") != ${#PACKAGES[@]})); then
  echo "build-base-image: packages without a candidate version (run apt-get update):" >&2
  grep '=(none)$' <<<"$versions" >&2 || true
  exit 1
fi
hash=$( (sha256sum "$0" | cut -d' ' -f1; echo "$versions") | sha256sum | cut -d' ' -f1)

current=$(docker image inspect --format '{{ index .Config.Labels "agentbox.content-hash" }}' \
            "$image" 2>/dev/null || true)
if ((force == 0)) && [[ "$current" == "$hash" ]]; then
  echo "build-base-image: $image is up to date (content hash ${hash:0:12})"
  exit 0
fi

work=$(mktemp -d /tmp/agentbox-base-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/root"
# apt downloads as the _apt user where it exists.
chmod 0755 "$work"
chown _apt "$work/debs" 2>/dev/null || true
echo "build-base-image: downloading ${#PACKAGES[@]} packages"
# shellcheck disable=SC2046  # one argument per line of $versions
(cd "$work/debs" && apt-get download -qq $(echo "$versions") >/dev/null)
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
done

root="$work/root"
# What dpkg's maintainer scripts would have done, reduced to what a shell needs.
mkdir -p "$root"/{tmp,workspace,root,run,proc,sys,dev,home,var/tmp}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
nogroup:x:65534:
GROUP
echo "root:*:19000:0:99999:7:::" >"$root/etc/shadow"
chmod 0640 "$root/etc/shadow"
[[ -e "$root/bin/sh" ]] || ln -s bash "$root/bin/sh"
[[ -e "$root/usr/bin/awk" ]] || ln -s mawk "$root/usr/bin/awk"
[[ -e "$root/usr/bin/which" ]] || ln -s which.debianutils "$root/usr/bin/which"
cp -a "$root/etc/skel/.bashrc" "$root/root/.bashrc" 2>/dev/null || true
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian} "$root"/var/cache/* "$root"/var/lib/dpkg

# Every dynamic executable must find its libraries inside the image.
missing=$(find "$root"/bin "$root"/usr/bin "$root"/sbin "$root"/usr/sbin -type f -perm -u+x \
            2>/dev/null | while read -r f; do
  if file -b "$f" 2>/dev/null | grep -q 'dynamically linked'; then
    chroot "$root" /lib64/ld-linux-x86-64.so.2 --list "${f#"$root"}" 2>&1 | grep 'not found' |
      sed "s|^|${f#"$root"}: |" || true
  fi
done)
if [[ -n "$missing" ]]; then
  echo "build-base-image: libraries missing in the image:" >&2
  echo "$missing" >&2
  exit 1
fi

old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
echo "build-base-image: importing $image ($(du -sh "$root" | cut -f1))"
tar -C "$root" --numeric-owner -c . | docker import \
  --change "LABEL agentbox.content-hash=$hash" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'WORKDIR /workspace' \
  --change 'CMD ["/bin/bash"]' \
  - "$image" >/dev/null
docker run --rm --network none "$image" bash -c 'echo ok; ls / >/dev/null; ps >/dev/null' |
  grep -qx ok || { echo "build-base-image: $image does not run bash" >&2; exit 1; }
new_id=$(docker image inspect --format '{{.Id}}' "$image")
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true  # still used by containers: left in place
fi
echo "build-base-image: built $image (content hash ${hash:0:12})"
