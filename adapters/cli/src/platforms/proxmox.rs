//! Proxmox's section config files (`type: id` lines with indented `key value` lines),
//! read by vzdump (`/etc/pve/jobs.cfg`) and pve-guest (`/etc/pve/storage.cfg`).

/// One section of a Proxmox section config (`storage.cfg`, `jobs.cfg`): `type: id`
/// followed by indented `key value` lines.
#[derive(Debug, Clone)]
pub struct Section {
    pub kind: String,
    pub id: String,
    pub line: usize,
    pub props: Vec<(String, String)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(s) = out.last_mut() {
                let t = line.trim();
                let (k, v) = t.split_once([' ', '\t']).unwrap_or((t, ""));
                s.props.push((k.to_owned(), v.trim().to_owned()));
            }
        } else if let Some((kind, id)) = line.split_once(':') {
            out.push(Section {
                kind: kind.trim().to_owned(),
                id: id.trim().to_owned(),
                line: i + 1,
                props: Vec::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_config() {
        let text = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nnfs: nas\n\tpath /mnt/pve/nas\n\tcontent snippets\n\tcontent-dirs snippets=hooks/sn\n";
        let s = sections(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].kind, "nfs");
        assert_eq!(s[1].get("path"), Some("/mnt/pve/nas"));
    }
}
