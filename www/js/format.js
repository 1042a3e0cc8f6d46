// Numbers for people: sizes, speeds, durations and percentages.
// Sizes use 1024 steps with the familiar labels (as browsers' download lists do).

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '–';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${value} B`;
  const digits = value < 10 ? 1 : 0;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

export function formatSpeed(bytesPerSecond) {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return '–';
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** "8 s", "2 min 5 s", "1 h 20 min"; "–" when unknown. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    const rest = s % 60;
    return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `${hours} h ${rest} min` : `${hours} h`;
}

/** Whole percent, rounded down, so 100% means every byte is there. */
export function percentOf(loaded, total) {
  if (!total) return loaded >= total ? 100 : 0;
  return Math.min(100, Math.floor((loaded / total) * 100));
}

/** "3 h ago", "just now". */
export function formatAge(msAgo) {
  const s = Math.max(0, Math.round(msAgo / 1000));
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** The link's expiry from `expires_in` seconds (null: never). */
export function formatExpiry(expiresIn) {
  if (expiresIn === null || expiresIn === undefined) return 'never expires';
  if (expiresIn < 3600) return `expires in ${Math.max(1, Math.round(expiresIn / 60))} min`;
  if (expiresIn < 2 * 86400) return `expires in ${Math.round(expiresIn / 3600)} h`;
  return `expires in ${Math.round(expiresIn / 86400)} days`;
}
