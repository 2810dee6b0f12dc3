// The engine's Azure resources in one resource group: a Linux Function App (Python 3.11) on an
// Elastic Premium EP1 plan with a system-assigned managed identity, the Functions host's
// storage account, a separate data storage account holding the jobs' zone containers
// (bronze-*, silver-*), a Service Bus namespace with the two queues, PostgreSQL Flexible
// Server 16 with Microsoft Entra authentication, and Application Insights on a Log Analytics
// workspace.
//
// Storage and identity: the app reaches both storage accounts with its managed identity. The
// jobs' data through STORAGE_ACCOUNT_URL (Storage Blob Data Contributor on the data account;
// never STORAGE_CONNECTION_STRING); the host through AzureWebJobsStorage__accountName
// (Storage Blob Data Owner on the host account). The one connection string left is
// WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: Elastic Premium keeps the app's content on an
// Azure Files share, and Azure Files takes no managed identity there.
//
// Deploy: az deployment group create -g <rg> -f infra/main.bicep -p baseName=<name> ...
// (see infra/README.md). One step stays manual: creating the PostgreSQL role for the app's
// managed identity (the SQL is in the outputs postgresRoleSql and postgresGrantSql).
//
// Why EP1 and not Flex Consumption: the number of instances is bounded by one number
// (maximumInstanceCount -> plan maximumElasticWorkerCount and site functionAppScaleLimit),
// which the PostgreSQL connection budget needs (instances x DB_POOL_MAX_SIZE); one instance
// is always ready, so neither HTTP nor the Service Bus triggers start cold; there is no
// execution time cap below host.json's functionTimeout (00:10:00); and the site takes the
// classic linuxFxVersion / app-settings shape. Flex Consumption (FC1) scales to zero and costs
// less when idle; docs/deploy.md shows the az CLI commands for it.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

@description('Region of every resource. It must offer Elastic Premium Functions and PostgreSQL Flexible Server.')
param location string = resourceGroup().location

@description('Short lowercase base name (letters, digits, hyphens); the default resource names derive from it.')
@minLength(3)
@maxLength(16)
param baseName string

@description('Function App name; globally unique (<appName>.azurewebsites.net). With the system-assigned identity it is also the PostgreSQL role name.')
param appName string = '${baseName}-${take(uniqueString(resourceGroup().id), 6)}'

@description('The Functions host\'s storage account (AzureWebJobsStorage__accountName, and the EP content share): 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string = take(toLower('${replace(baseName, '-', '')}${uniqueString(resourceGroup().id)}'), 24)

@description('The data storage account holding the zone containers (STORAGE_ACCOUNT_URL): 3-24 lowercase letters and digits, globally unique, not the host\'s account.')
@minLength(3)
@maxLength(24)
param dataStorageAccountName string = take(toLower('${replace(baseName, '-', '')}data${uniqueString(resourceGroup().id)}'), 24)

@description('Redundancy of the data account (the host account stays Standard_LRS). ZRS and GZRS are offered in some regions only.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param dataStorageSku string = 'Standard_LRS'

@description('Allow account keys and SAS on the data account. false (default): only Microsoft Entra identities read and write the data (the app\'s identity; people with az --auth-mode login or azcopy signed in).')
param dataStorageAllowSharedKeyAccess bool = false

@description('Object ids of users, groups or service principals that upload into the bronze containers: each gets Storage Blob Data Contributor on the data account (e.g. az ad signed-in-user show --query id -o tsv).')
param dataUploaderPrincipalIds array = []

@description('The kind of principal every id in dataUploaderPrincipalIds is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param dataUploaderPrincipalType string = 'User'

@description('Service Bus namespace name: 6-50 characters, globally unique (<name>.servicebus.windows.net).')
@minLength(6)
@maxLength(50)
param serviceBusNamespaceName string = '${baseName}-bus-${take(uniqueString(resourceGroup().id), 6)}'

@description('Service Bus tier: Standard or Premium (Basic has no duplicate detection).')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Turn off SAS keys on the namespace so only Microsoft Entra identities can connect. Set false only for the connection-string alternative in docs/deploy.md.')
param serviceBusDisableLocalAuth bool = true

@description('Default message time to live on both queues; an expired message is dead-lettered.')
param messageTimeToLive string = 'P14D'

@description('Also grant "Azure Service Bus Data Owner" to the app, so the scale controller can read queue lengths (Microsoft lists it with Data Receiver for Service Bus triggers). Sender + Receiver are enough to run.')
param grantServiceBusDataOwner bool = false

@description('PostgreSQL server name: 3-63 lowercase letters, digits, hyphens; globally unique (<name>.postgres.database.azure.com).')
param postgresServerName string = toLower('${baseName}-pg-${take(uniqueString(resourceGroup().id), 6)}')

@description('The database the app uses; the app creates its "app" schema in it on first use.')
param postgresDatabaseName string = 'engine'

@description('PostgreSQL compute. Standard_B2s allows 429 connections (414 for users); Standard_B1ms only 50 (35), too few for more than a couple of instances.')
param postgresSkuName string = 'Standard_B2s'

@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

@minValue(32)
param postgresStorageSizeGB int = 32

@description('Object id of the Microsoft Entra user or group that administers PostgreSQL (e.g. az ad signed-in-user show --query id -o tsv).')
param entraAdminObjectId string

@description('Name of that principal: the user principal name of a user, the display name of a group.')
param entraAdminPrincipalName string

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param entraAdminPrincipalType string = 'User'

@description('Most instances the app scales out to. Keep maximumInstanceCount x dbPoolMaxSize (+ a few) under the server\'s max_connections.')
@minValue(1)
@maxValue(100)
param maximumInstanceCount int = 20

@description('Instances kept warm (always ready).')
@minValue(1)
param alwaysReadyInstances int = 1

@description('DB_POOL_MIN_SIZE: connections each instance keeps open.')
@minValue(0)
param dbPoolMinSize int = 1

@description('DB_POOL_MAX_SIZE: most connections each instance opens.')
@minValue(1)
param dbPoolMaxSize int = 10

@description('MAX_REQUEST_BYTES: the largest submit body accepted.')
@minValue(1024)
param maxRequestBytes int = 1048576

@description('Which trigger serves the task queue: batch (process_task_batch, up to host.json maxMessageBatchSize messages per invocation) or single (process_task_message, one message at a time). Exactly one runs: the other gets AzureWebJobs.<function>.Disabled=true.')
@allowed([
  'batch'
  'single'
])
param taskTrigger string = 'batch'

param tags object = {}

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

// Fixed by the code (config.py JOBS_QUEUE, TASKS_QUEUE).
var queueNames = [
  'geospatial-jobs'
  'geospatial-tasks'
]

// Fixed by the code: the defaults of config.py's BRONZE_VECTORS_CONTAINER,
// BRONZE_RASTERS_CONTAINER, BRONZE_MISC_CONTAINER (inputs), SILVER_COGS_CONTAINER,
// SILVER_VECTORS_CONTAINER, SILVER_STAC_ASSETS_CONTAINER, SILVER_TEMP_CONTAINER (outputs and
// intermediates). The app sets none of those settings, so it uses these names.
var zoneContainerNames = [
  'bronze-vectors'
  'bronze-rasters'
  'bronze-misc'
  'silver-cogs'
  'silver-vectors'
  'silver-stac-assets'
  'silver-temp'
]

var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var serviceBusDataSenderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiverRoleId = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var serviceBusDataOwnerRoleId = '090c5cfd-751d-490a-894a-3ce6f1109419'

// Only for the Elastic Premium content share (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING): Azure
// Files takes no managed identity there. Nothing else gets an account key.
var contentShareConnectionString = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${storage.listKeys().keys[0].value}'

// ---------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${appName}-logs'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${appName}-ai'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
  }
}

// ---------------------------------------------------------------------------------------
// Storage: the Functions host's account (AzureWebJobsStorage__accountName, the EP content
// share) and the data account (the zone containers, STORAGE_ACCOUNT_URL). Two accounts: the
// host's internal blobs (function keys, leases, timer locks) stay apart from the data, and the
// data gets its own redundancy (dataStorageSku), access rules and lifecycle.
// ---------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
  }
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: dataStorageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: dataStorageSku
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: dataStorageAllowSharedKeyAccess
    // The portal browses the containers with the signed-in user's Entra identity, not a key.
    defaultToOAuthAuthentication: true
  }
}

resource dataBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
}

resource zoneContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in zoneContainerNames: {
  parent: dataBlobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

// ---------------------------------------------------------------------------------------
// Service Bus
// ---------------------------------------------------------------------------------------

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: serviceBusNamespaceName
  location: location
  tags: tags
  sku: {
    name: serviceBusSku
    tier: serviceBusSku
    capacity: serviceBusSku == 'Premium' ? 1 : null
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: serviceBusDisableLocalAuth
  }
}

// requiresDuplicateDetection can be set only when a queue is created: changing it later
// means deleting and recreating the queue.
resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for queueName in queueNames: {
  parent: serviceBus
  name: queueName
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: messageTimeToLive
    requiresSession: false
    enablePartitioning: false
  }
}]

// ---------------------------------------------------------------------------------------
// PostgreSQL Flexible Server with Microsoft Entra authentication
// ---------------------------------------------------------------------------------------

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: postgresServerName
  location: location
  tags: tags
  sku: {
    name: postgresSkuName
    tier: postgresSkuTier
  }
  properties: {
    version: '16'
    createMode: 'Create'
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    storage: {
      storageSizeGB: postgresStorageSizeGB
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

// The server takes one change at a time: the children below are chained with dependsOn.

// 0.0.0.0-0.0.0.0 is Azure's "allow public access from Azure services": the Function App's
// outbound addresses change, so it is the simple choice. It admits any Azure-hosted client
// (authentication still applies); private networking is the stricter alternative.
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: postgres
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: postgres
  name: postgresDatabaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    allowAzureServices
  ]
}

// The geospatial jobs' extensions: PostGIS, and btree_gist and unaccent, which pgstac needs.
// Allow-listed only: the administrator creates them with pgstac's migrations (docs/deploy.md
// step 8b: make migrate GEO=1 APP_ROLE=<app>), since those create roles the app may not.
resource allowedExtensions 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: postgres
  name: 'azure.extensions'
  properties: {
    value: 'POSTGIS,BTREE_GIST,UNACCENT'
    source: 'user-override'
  }
  dependsOn: [
    database
  ]
}

resource entraAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: postgres
  name: entraAdminObjectId
  properties: {
    principalName: entraAdminPrincipalName
    principalType: entraAdminPrincipalType
    tenantId: subscription().tenantId
  }
  dependsOn: [
    database
  ]
}

// ---------------------------------------------------------------------------------------
// Function App: Linux, Python 3.11, Elastic Premium EP1
// ---------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${appName}-plan'
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: 'EP1'
    tier: 'ElasticPremium'
    family: 'EP'
  }
  properties: {
    reserved: true // Linux
    maximumElasticWorkerCount: maximumInstanceCount
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: 'Python|3.11'
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      minimumElasticInstanceCount: alwaysReadyInstances
      functionAppScaleLimit: maximumInstanceCount
      appSettings: [
        // The Functions host
        {
          name: 'FUNCTIONS_EXTENSION_VERSION'
          value: '~4'
        }
        {
          name: 'FUNCTIONS_WORKER_RUNTIME'
          value: 'python'
        }
        {
          // The host's storage through the app's identity (Storage Blob Data Owner on the host
          // account, below). Do not also set AzureWebJobsStorage: a connection string there
          // would be used instead.
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          // The content share on Azure Files, which takes no managed identity: the one
          // connection string the app keeps.
          name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
          value: contentShareConnectionString
        }
        {
          name: 'WEBSITE_CONTENTSHARE'
          value: toLower(appName)
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        // The engine (config.py; every name is in local.settings.json.example)
        {
          name: 'DATABASE_URL'
          value: 'postgresql://${appName}@${postgres.properties.fullyQualifiedDomainName}:5432/${postgresDatabaseName}'
        }
        {
          name: 'DATABASE_AUTH'
          value: 'entra'
        }
        {
          name: 'DB_POOL_MIN_SIZE'
          value: string(dbPoolMinSize)
        }
        {
          name: 'DB_POOL_MAX_SIZE'
          value: string(dbPoolMaxSize)
        }
        {
          // Only check the geospatial database: the administrator migrates it (pgstac).
          name: 'GEO_AUTO_MIGRATE'
          value: 'false'
        }
        {
          name: 'QUEUE_BACKEND'
          value: 'servicebus'
        }
        {
          // Identity-based connection: read by the Service Bus trigger (connection
          // "ServiceBusConnection") and by the app's own sender. Do not also set
          // ServiceBusConnection (a connection string).
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: '${serviceBus.name}.servicebus.windows.net'
        }
        {
          // The jobs' data (infrastructure/blob_storage.py): the zone containers of the data
          // account, through the app's identity (Storage Blob Data Contributor, below). Never
          // STORAGE_CONNECTION_STRING in Azure. The zone container settings keep their defaults,
          // the names in zoneContainerNames.
          name: 'STORAGE_ACCOUNT_URL'
          value: 'https://${dataStorage.name}.blob.${environment().suffixes.storage}'
        }
        {
          name: 'MAX_REQUEST_BYTES'
          value: string(maxRequestBytes)
        }
        // The task queue has two triggers (triggers/queue_triggers.py); exactly one is enabled
        // (taskTrigger), else both would compete for the queue.
        {
          name: 'AzureWebJobs.process_task_message.Disabled'
          value: taskTrigger == 'batch' ? 'true' : 'false'
        }
        {
          name: 'AzureWebJobs.process_task_batch.Disabled'
          value: taskTrigger == 'single' ? 'true' : 'false'
        }
      ]
    }
  }
}

// ---------------------------------------------------------------------------------------
// Role assignments: the app's identity on the Service Bus namespace
// ---------------------------------------------------------------------------------------

var serviceBusRoleIds = concat(
  [
    serviceBusDataSenderRoleId
    serviceBusDataReceiverRoleId
  ],
  grantServiceBusDataOwner ? [serviceBusDataOwnerRoleId] : []
)

resource serviceBusRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in serviceBusRoleIds: {
  name: guid(serviceBus.id, functionApp.id, roleId)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}]

// ---------------------------------------------------------------------------------------
// Role assignments: the app's identity on the two storage accounts, uploaders on the data
// ---------------------------------------------------------------------------------------

// The jobs read the bronze containers and write the silver ones. Scoped to the data account,
// so it covers every zone container (and only this account's).
resource dataContributorRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, functionApp.id, storageBlobDataContributorRoleId)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// AzureWebJobsStorage__accountName: the host keeps function keys, leases and timer locks in
// blobs and creates its containers. Until this assignment applies (a few minutes after the
// first deployment) the host logs storage authorization errors.
resource hostStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// People or pipelines that put files into the bronze containers (az storage blob upload-batch
// --auth-mode login, azcopy): with shared keys off, a data role is the only way in.
resource uploaderRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in dataUploaderPrincipalIds: {
  name: guid(dataStorage.id, principalId, storageBlobDataContributorRoleId)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: principalId
    principalType: dataUploaderPrincipalType
  }
}]

// ---------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output functionAppPrincipalId string = functionApp.identity.principalId
output serviceBusNamespace string = '${serviceBus.name}.servicebus.windows.net'
output queueNames array = queueNames
output storageAccountName string = storage.name
output dataStorageAccountName string = dataStorage.name
output storageAccountUrl string = 'https://${dataStorage.name}.blob.${environment().suffixes.storage}'
output zoneContainerNames array = zoneContainerNames
output postgresHost string = postgres.properties.fullyQualifiedDomainName
output postgresDatabaseName string = database.name
output appInsightsName string = appInsights.name
output logAnalyticsWorkspaceId string = workspace.id

@description('Run as the Entra admin, connected to the "postgres" database: creates the role of the app\'s managed identity.')
output postgresRoleSql string = 'SELECT * FROM pgaadauth_create_principal(\'${functionApp.name}\', false, false);'

@description('Run from this repository as the Entra admin (docs/deploy.md step 8b): the extensions, schema geo and pgstac in the app\'s database, and the app\'s role granted pgstac_ingest, USAGE, CREATE on schema geo and SELECT on its tables (stac_catalog_vectors reads them).')
output geoMigrateCommand string = 'DATABASE_URL="host=${postgres.properties.fullyQualifiedDomainName} port=5432 dbname=${postgresDatabaseName} user=<admin> sslmode=require" make migrate GEO=1 APP_ROLE=${functionApp.name}'

@description('Run as the Entra admin, connected to the app\'s database: lets the app create its "app" schema (it applies its own migrations).')
output postgresGrantSql string = 'GRANT CONNECT, CREATE ON DATABASE "${postgresDatabaseName}" TO "${functionApp.name}";'
