//! `keel-demo seed`: realistic users, jobs and accounts through the batch path (COPY on
//! PostgreSQL), with a progress bar on stderr.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_pool::{Config, Pool};
use keel_repo::Repo;
use keel_schema::{Id, NewJob, NewUser};
use rand::Rng;
use rand::seq::IndexedRandom;

const FIRST: &[&str] = &[
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "John",
    "Katherine",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Ole",
    "Radia",
    "Sophie",
    "Tim",
    "Vint",
    "Whitfield",
    "Yukihiro",
    "Zhang",
    "Anita",
    "Bjarne",
    "Carol",
    "Dennis",
    "Evelyn",
    "Fernando",
    "Guido",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Knuth",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "McCarthy",
    "Johnson",
    "Lamport",
    "Hamilton",
    "Wirth",
    "Dahl",
    "Perlman",
    "Wilson",
    "Berners-Lee",
    "Cerf",
    "Diffie",
    "Matsumoto",
    "Wei",
    "Borg",
    "Stroustrup",
    "Shaw",
    "Ritchie",
    "Boyd",
    "Corbató",
    "van Rossum",
];
const TITLES: &[&str] = &[
    "Software Engineer",
    "Database Administrator",
    "Site Reliability Engineer",
    "Data Scientist",
    "Product Manager",
    "Technical Writer",
    "Security Analyst",
    "Engineering Manager",
    "QA Engineer",
    "Solutions Architect",
    "Support Engineer",
    "Designer",
    "Researcher",
    "Platform Engineer",
    "Analyst",
];

/// What to generate.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Users to create.
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    /// Jobs per user.
    #[arg(long, default_value_t = 3)]
    pub jobs_per_user: u64,
    /// Accounts to open (owned by the new users), each with a random balance.
    #[arg(long, default_value_t = 0)]
    pub accounts: u64,
    /// Users per batch (each batch is one all-or-nothing insert).
    #[arg(long, default_value_t = 10_000)]
    pub batch: u64,
}

/// What `seed` did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Seeded {
    /// Users inserted.
    pub users: u64,
    /// Jobs inserted.
    pub jobs: u64,
    /// Accounts opened.
    pub accounts: u64,
    /// Wall time.
    pub seconds: f64,
}

/// `keel-demo seed`: opens the pool, applies pending migrations, seeds and prints the summary.
pub async fn command(config: Config, args: &SeedArgs) -> Result<()> {
    let pool = crate::open(config).await?;
    pool.migrate(&keel_schema::MIGRATIONS).await.context("running migrations")?;
    let seeded = run(&pool, args).await?;
    println!("{}", summary(&seeded));
    Ok(())
}

/// A realistic user; `tag` keeps emails unique across runs on the same database.
fn fake_user(rng: &mut impl Rng, tag: &str, i: u64) -> NewUser {
    let first = FIRST.choose(rng).copied().unwrap_or("Ada");
    let last = LAST.choose(rng).copied().unwrap_or("Lovelace");
    let email = format!(
        "{}.{}.{i}.{tag}@example.com",
        first.to_lowercase(),
        last.to_lowercase().replace([' ', 'ó'], "")
    );
    NewUser::new(format!("{first} {last}"), email)
}

fn fake_job(rng: &mut impl Rng, user: Id) -> NewJob {
    let title = TITLES.choose(rng).copied().unwrap_or("Engineer");
    // $30,000 – $250,000 a year, in cents, rounded to dollars.
    let salary = rng.random_range(30_000..=250_000i64) * 100;
    NewJob::new(user, title, salary)
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg:8} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Inserts the users, their jobs and the accounts, printing progress on stderr (only when it
/// is a terminal) and a summary on stdout.
pub async fn run(pool: &Pool, args: &SeedArgs) -> Result<Seeded> {
    let repo = Repo::new(pool.clone());
    let tag = &Id::new().to_string()[24..];
    let total_rows = args.users + args.users * args.jobs_per_user + args.accounts;
    let progress = bar(total_rows);
    progress.set_message("users");
    let started = Instant::now();
    let mut owners: Vec<Id> = Vec::with_capacity(args.accounts.min(args.users) as usize);
    let (mut users_done, mut jobs_done) = (0u64, 0u64);
    let batch = args.batch.max(1);
    while users_done < args.users {
        let n = batch.min(args.users - users_done);
        let (users, jobs) = {
            let mut rng = rand::rng();
            let users: Vec<NewUser> = (0..n).map(|i| fake_user(&mut rng, tag, users_done + i)).collect();
            let jobs: Vec<NewJob> = users
                .iter()
                .flat_map(|u| (0..args.jobs_per_user).map(|_| u.id).collect::<Vec<_>>())
                .map(|id| fake_job(&mut rng, id))
                .collect();
            (users, jobs)
        };
        repo.insert_users(&users).await.context("inserting users")?;
        progress.inc(n);
        progress.set_message("jobs");
        repo.insert_jobs(&jobs).await.context("inserting jobs")?;
        progress.inc(jobs.len() as u64);
        progress.set_message("users");
        owners.extend(users.iter().take((args.accounts as usize).saturating_sub(owners.len())).map(|u| u.id));
        users_done += n;
        jobs_done += jobs.len() as u64;
    }
    progress.set_message("accounts");
    let mut accounts_done = 0;
    if args.accounts > 0 && owners.is_empty() {
        anyhow::bail!("accounts need owners: seed at least one user");
    }
    while accounts_done < args.accounts {
        let n = batch.min(args.accounts - accounts_done);
        let rows: Vec<keel_schema::NewAccount> = {
            let mut rng = rand::rng();
            (0..n)
                .map(|i| {
                    let owner = owners[((accounts_done + i) as usize) % owners.len()];
                    keel_schema::NewAccount::new(owner, rng.random_range(1_000..=100_000i64) * 100)
                })
                .collect()
        };
        repo.insert_accounts(&rows).await.context("opening accounts")?;
        progress.inc(n);
        accounts_done += n;
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    Ok(Seeded { users: users_done, jobs: jobs_done, accounts: accounts_done, seconds: elapsed.as_secs_f64() })
}

/// The one-line summary: counts and rows/s.
pub fn summary(s: &Seeded) -> String {
    let rows = s.users + s.jobs + s.accounts;
    format!(
        "seeded {} users, {} jobs, {} accounts in {:.2}s ({} rows/s)",
        crate::table::thousands(s.users),
        crate::table::thousands(s.jobs),
        crate::table::thousands(s.accounts),
        s.seconds,
        crate::table::per_second(rows, Duration::from_secs_f64(s.seconds))
    )
}
