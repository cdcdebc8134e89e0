//! Webhook administration: subscriptions and their deliveries (the outbox and the dispatcher are
//! `crate::webhooks`).

use super::*;

/// A webhook to create.
pub struct NewWebhook {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: Option<String>,
    pub description: Option<String>,
    pub active: bool,
}

pub(super) fn validate_events(events: &[String]) -> Result<()> {
    if events.is_empty() {
        return Err(Error::invalid("A webhook must subscribe to at least one event"));
    }
    for e in events {
        if !crate::webhooks::EVENTS.contains(&e.as_str()) {
            return Err(Error::invalid(format!("Unknown webhook event '{e}'. Known events: {}", crate::webhooks::EVENTS.join(", "))));
        }
    }
    Ok(())
}

pub(super) fn validate_webhook_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(InvalidParameter::missing("name").into());
    }
    check_length("name", 256, name)?;
    Ok(())
}

impl RegistryService {
    pub async fn create_webhook(&self, actor: &Actor, new: NewWebhook) -> Result<plinth_store::webhooks::Webhook> {
        let event = AuditEvent::new(actor, "webhook.create", "webhook", "?");
        let res = async {
            validate_webhook_name(&new.name)?;
            crate::webhooks::validate_url(&new.url).map_err(Error::invalid)?;
            validate_events(&new.events)?;
            if let Some(d) = &new.description {
                check_length("description", 10_000, d)?;
            }
            let secret = new.secret.unwrap_or_default();
            check_length("secret", 1000, &secret)?;
            let now = now_millis();
            let hook = plinth_store::webhooks::Webhook {
                id: uuid::Uuid::new_v4().simple().to_string(),
                name: new.name,
                url: new.url,
                events: new.events,
                secret,
                status: if new.active {
                    plinth_store::webhooks::WebhookStatus::Active
                } else {
                    plinth_store::webhooks::WebhookStatus::Disabled
                },
                description: new.description,
                created_at: now,
                updated_at: now,
            };
            // The URL may carry credentials: the trail keeps the host only.
            let mut created = event
                .clone()
                .with_change(Change::set("url_host", url_host(&hook.url)))
                .with_change(Change::set("events", hook.events.join(",")));
            created.resource_id = hook.id.clone();
            self.outbox.store().create_webhook(&hook, Record::event(created)).await?;
            Ok(hook)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn get_webhook(&self, id: &str) -> Result<plinth_store::webhooks::Webhook> {
        Ok(self.outbox.store().get_webhook(id).await?)
    }

    pub async fn list_webhooks(&self, max_results: Option<i64>, token: Option<&str>) -> Result<Page<plinth_store::webhooks::Webhook>> {
        let page = page(max_results, 100, 1000, token)?;
        Ok(self.outbox.store().list_webhooks(page).await?.into_page(page))
    }

    pub async fn update_webhook(
        &self,
        actor: &Actor,
        id: &str,
        update: plinth_store::webhooks::WebhookUpdate,
    ) -> Result<plinth_store::webhooks::Webhook> {
        let mut event = AuditEvent::new(actor, "webhook.update", "webhook", id);
        let res = async {
            if let Some(n) = &update.name {
                validate_webhook_name(n)?;
            }
            if let Some(u) = &update.url {
                crate::webhooks::validate_url(u).map_err(Error::invalid)?;
                event.changes.push(Change::set("url_host", url_host(u)));
            }
            if let Some(e) = &update.events {
                validate_events(e)?;
                event.changes.push(Change::set("events", e.join(",")));
            }
            if let Some(s) = &update.secret {
                check_length("secret", 1000, s)?;
                event.changes.push(Change::set("secret", "(changed)"));
            }
            if let Some(s) = update.status {
                event.changes.push(Change::set("status", s.as_str()));
            }
            Ok(self.outbox.store().update_webhook(id, &update, now_millis(), Record::event(event.clone())).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_webhook(&self, actor: &Actor, id: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "webhook.delete", "webhook", id);
        let res = async { Ok(self.outbox.store().delete_webhook(id, Record::event(event.clone())).await?) }.await;
        self.audited(event, res).await
    }

    /// Queues a test delivery to the webhook.
    pub async fn test_webhook(&self, id: &str) -> Result<()> {
        let hook = self.outbox.store().get_webhook(id).await?;
        Ok(self.outbox.ping(&hook).await?)
    }

    pub async fn list_deliveries(
        &self,
        id: &str,
        max_results: Option<i64>,
        token: Option<&str>,
    ) -> Result<Page<plinth_store::webhooks::Delivery>> {
        self.outbox.store().get_webhook(id).await?;
        let page = page(max_results, 100, 1000, token)?;
        Ok(self.outbox.store().list_deliveries(id, page).await?.into_page(page))
    }
}

/// The host a webhook URL names (for the audit trail: never the credentials or the path).
pub(super) fn url_host(url: &str) -> String {
    reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
}
