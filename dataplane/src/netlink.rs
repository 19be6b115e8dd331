//! The few rtnetlink operations the gateway and the lab need, over one [`rtnetlink::Handle`].
//!
//! A netlink socket belongs to the network namespace of the thread that opened it, so callers that
//! work in another namespace open the connection from a thread that entered it (see `hutong::lab`).

use std::io;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags},
    link::LinkAttribute,
};
use rtnetlink::{Handle, LinkUnspec};

use crate::xdp::tables::PortHandle;

/// Opens a route-netlink connection in the calling thread's network namespace and drives it on
/// the current tokio runtime.
pub fn connect() -> io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The kernel's errno inside an rtnetlink error, if it is one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Index and MAC of the interface called `name`.
pub async fn link(handle: &Handle, name: &str) -> anyhow::Result<PortHandle> {
    let msg = get(handle, name).await?;
    let mut mac = [0u8; 6];
    for attr in &msg.attributes {
        if let LinkAttribute::Address(a) = attr {
            if a.len() == 6 {
                mac.copy_from_slice(a);
            }
        }
    }
    Ok(PortHandle { ifindex: msg.header.index, mac })
}

/// The link message of the interface called `name` (flags, attributes).
pub async fn get(handle: &Handle, name: &str) -> anyhow::Result<netlink_packet_route::link::LinkMessage> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => anyhow::bail!("no interface named {name:?}"),
        Err(e) if errno(&e) == Some(libc::ENODEV) => anyhow::bail!("no interface named {name:?}"),
        Err(e) => Err(anyhow::anyhow!("looking up interface {name:?}: {e}")),
    }
}

pub async fn set_up(handle: &Handle, ifindex: u32) -> anyhow::Result<()> {
    handle.link().set(LinkUnspec::new_with_index(ifindex).up().build()).execute().await?;
    Ok(())
}

/// Adds `addr` to the interface; an address that is already there is fine. IPv6 addresses skip
/// duplicate address detection: a tentative address neither answers neighbor solicitations
/// nor sources them, which would leave the gateway unreachable for its first second or two.
/// Returns whether it added it (false: it was there already).
pub async fn add_address(handle: &Handle, ifindex: u32, addr: IpNet) -> anyhow::Result<bool> {
    let mut req = handle.address().add(ifindex, addr.addr(), addr.prefix_len());
    if addr.addr().is_ipv6() {
        req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(false),
        r => r.map(|_| true).map_err(Into::into),
    }
}

/// Removes `addr` from the interface; an address (or interface) that is not there is fine.
pub async fn del_address(handle: &Handle, ifindex: u32, addr: IpNet) -> anyhow::Result<()> {
    let mut found = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .set_address_filter(addr.addr())
        .set_prefix_length_filter(addr.prefix_len())
        .execute();
    while let Some(msg) = found.try_next().await? {
        match handle.address().del(msg).execute().await {
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
            r => r?,
        }
    }
    Ok(())
}
