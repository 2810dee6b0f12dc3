// The engine's Azure resources in one resource group: a Linux Function App (Python 3.11) on an
// Elastic Premium EP1 plan with a system-assigned managed identity, its storage account,
// a Service Bus namespace with the two queues, PostgreSQL Flexible Server 16 with Microsoft
// Entra authentication, and Application Insights on a Log Analytics workspace.
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

@description('Storage account name (AzureWebJobsStorage): 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string = take(toLower('${replace(baseName, '-', '')}${uniqueString(resourceGroup().id)}'), 24)

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

var serviceBusDataSenderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiverRoleId = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var serviceBusDataOwnerRoleId = '090c5cfd-751d-490a-894a-3ce6f1109419'

var storageConnectionString = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${storage.listKeys().keys[0].value}'

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
// Storage (AzureWebJobsStorage and the EP content share)
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
          name: 'AzureWebJobsStorage'
          value: storageConnectionString
        }
        {
          name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
          value: storageConnectionString
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
// Outputs
// ---------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output functionAppPrincipalId string = functionApp.identity.principalId
output serviceBusNamespace string = '${serviceBus.name}.servicebus.windows.net'
output queueNames array = queueNames
output postgresHost string = postgres.properties.fullyQualifiedDomainName
output postgresDatabaseName string = database.name
output appInsightsName string = appInsights.name
output logAnalyticsWorkspaceId string = workspace.id

@description('Run as the Entra admin, connected to the "postgres" database: creates the role of the app\'s managed identity.')
output postgresRoleSql string = 'SELECT * FROM pgaadauth_create_principal(\'${functionApp.name}\', false, false);'

@description('Run as the Entra admin, connected to the app\'s database: lets the app create its "app" schema (it applies its own migrations).')
output postgresGrantSql string = 'GRANT CONNECT, CREATE ON DATABASE "${postgresDatabaseName}" TO "${functionApp.name}";'
